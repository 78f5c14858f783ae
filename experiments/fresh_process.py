"""One benchmark row in a fresh Python process, so that its timings and peak memory hold its own
work only (no optimizer state, allocator cache or warm kernels of an earlier row).

A row is a script run with the arguments that select it; it prints its result as JSON on the last
line of its standard output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def row_result(script: str | Path, args: Sequence[str], env: Mapping[str, str] | None = None) -> Any:
    """The JSON value on the last stdout line of `python script *args` (environment `env`, else
    this one's); RuntimeError with the end of its stderr if it fails."""
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
