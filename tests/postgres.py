"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a temporary
data directory, TCP on 127.0.0.1 at a free port, trust authentication, one database.

initdb refuses to run as root, so as root the server runs as the `postgres` user (which the
Debian package creates). A missing PostgreSQL fails the test that needs it: `.ci/run` installs
it, and a skip would hide a CI machine without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_mlflow_server import free_port

USER = "postgres"


def binaries() -> Path:
    """The bin directory of the newest PostgreSQL under /usr/lib/postgresql."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    return found[-1].parent


class Postgres:
    """One server and database `name`; `url` is its SQLAlchemy URL (psycopg 3 driver)."""

    def __init__(self, name: str = "mlflow") -> None:
        self.bin, self.name, self.port = binaries(), name, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="foresight-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, USER)
            self.as_user = ["runuser", "-u", USER, "--"]
        self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{name}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(self.bin / program), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            pytest.fail(f"{program} failed: {done.stderr[-2000:]}\n{tail}")

    def start(self) -> None:
        data = str(self.root / "data")
        self._run("initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        self._run("pg_ctl", "-D", data, "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, self.name)

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").is_file():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str, *params: object) -> list[tuple]:
        """The rows of one SQL statement, straight from the database (not through MLflow)."""
        import psycopg

        with psycopg.connect(self.url.replace("+psycopg", "")) as connection:
            return connection.execute(sql, params).fetchall()
