"""The application layer: the `foresight` command line and the glue of each command.

The only code that wires the packages together (`foresight` core, `trackers`, `predictors`);
the core and the other packages never import it."""
