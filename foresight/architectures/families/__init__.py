"""One module per model family, each defining `ARCHITECTURE` (a `spec.Architecture`)."""
