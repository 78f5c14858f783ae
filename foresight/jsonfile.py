"""Reading the JSON files that Foresight writes (manifests, run records, forecaster specs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(file: Path, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object that `file` holds. `error("{file}: unreadable {what} (cause)")` if it
    cannot be read or decoded, `error("{file}: {what} is not a JSON object")` if it holds
    another JSON value."""
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{file}: unreadable {what} ({e})") from None
    if not isinstance(value, dict):
        raise error(f"{file}: {what} is not a JSON object")
    return value
