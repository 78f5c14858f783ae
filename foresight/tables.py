"""Tables for the terminal: a pandas frame as a rich table that fits an 80-column terminal.

Column names are shown with spaces for underscores and wrap at spaces (or fold) instead of
being cut with an ellipsis; numbers are rounded for people.
"""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

SHORT = 24  # cells up to this long (names, numbers) are never wrapped


def human(value: object, digits: int = 3) -> str:
    """A cell for people: floats with `digits` decimals (no decimals from 100 up), NaN as "-"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    return str(value)


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> RenderableType:
    """`frame` as a compact rich table under its title (a line of its own, not squeezed to the
    table's width): no rules, columns two spaces apart, numeric columns right-aligned. A
    column of short cells (names, numbers) is exactly as wide as its longest cell or the
    longest word of its name; a column of longer text shares the rest of the width and wraps
    at spaces. Names wrap only at spaces and nothing is cut (8 columns of names and numbers
    fit 80)."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    cells = [[human(v, digits) for v in row] for row in frame.itertuples(index=False)]
    for i, column in enumerate(frame.columns):
        name = str(column).replace("_", " ")
        words = [len(word) for word in name.split()] + [len(w) for row in cells for w in row[i].split()]
        widest = max([len(word) for word in name.split()] + [len(row[i]) for row in cells])
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        justify = "right" if numeric else "left"
        if widest <= SHORT:
            table.add_column(name, overflow="fold", justify=justify, width=widest)
        else:
            table.add_column(name, overflow="fold", justify=justify, min_width=max(words), ratio=1)
    for row in cells:
        table.add_row(*row)
    return table if title is None else Group(Text(title, style="bold"), table)
