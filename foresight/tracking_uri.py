"""The MLflow tracking URI, checked before a command writes anything.

`check_tracking_uri(uri)` is the one check that every command logging to MLflow runs first:
the scheme is one MLflow has a tracking store for, a server or database answers within a few
seconds, a SQLite store can be written where it lies, and a file store (which MLflow 3 refuses)
is named as such. It raises `TrackingUriError` (a ValueError, so the CLI prints one `error:` line)
naming MLFLOW_TRACKING_URI; it creates no store, no directory and no file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from foresight.mlflow_log import TrackingUnavailable, check_reachable

# tracking store schemes of MLflow (its tracking store registry), a `+driver` suffix aside
SERVER_SCHEMES = ("http", "https")
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
REMOTE_SCHEMES = ("databricks", "databricks-uc", "uc")  # checked by MLflow itself, not here
KNOWN_SCHEMES = ("sqlite", *SERVER_SCHEMES, *DATABASE_PORTS, *REMOTE_SCHEMES, "file")
TIMEOUT = 3.0  # seconds a server or database has to answer


class TrackingUriError(ValueError):
    """A tracking URI that cannot take a run; the message names MLFLOW_TRACKING_URI."""


def redacted(uri: str) -> str:
    """`uri` with the password of its user part, if any, replaced by `***`."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def probe_tcp(host: str, port: int, timeout: float = TIMEOUT) -> str | None:
    """None if something accepts a TCP connection at host:port within `timeout` seconds,
    else why not (the OS error, or a timeout)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)


def writable_location(path: Path) -> str | None:
    """None if a file at `path` can be written or created (its nearest existing ancestor is a
    directory this process may write, on a file system mounted read-write), else why not."""
    if path.exists():
        if path.is_dir():
            return f"{path} is a directory"
        target = path
    else:
        target = path.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            return f"{target} is not a directory"
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        return f"{target} is on a read-only file system"
    if not os.access(target, os.W_OK) or (target is path and not os.access(path.parent, os.W_OK)):
        return f"{target} is not writable"
    return None


def _socket_given(query: str) -> bool:
    """Whether a database URI's query names its host or socket (e.g. a Unix socket directory),
    which the TCP probe does not check."""
    return any(key in ("host", "hostaddr", "unix_socket") for key, _ in parse_qsl(query))


def check_tracking_uri(uri: str, timeout: float = TIMEOUT) -> None:
    """TrackingUriError unless MLflow can log to `uri` (see the module docstring): a known
    scheme; an http(s) server that answers (`foresight.mlflow_log.check_reachable`); a database
    server listening at its host and port (unless the query names a socket); a SQLite file that
    can be written (or created); not a file store, unless MLFLOW_ALLOW_FILE_STORE asks for one."""
    shown = redacted(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if len(scheme) == 1:  # a Windows drive letter: a local path, i.e. a file store
        scheme = ""
    if scheme not in (*KNOWN_SCHEMES, ""):
        raise TrackingUriError(
            f"MLFLOW_TRACKING_URI {shown}: unknown scheme {parts.scheme!r}; MLflow logs to "
            f"{', '.join(s + '://' for s in KNOWN_SCHEMES if s != 'file')}"
        )
    if scheme in SERVER_SCHEMES:
        try:
            check_reachable(uri, timeout)
        except TrackingUnavailable as e:
            raise TrackingUriError(f"MLFLOW_TRACKING_URI: {e}") from None
    elif scheme in DATABASE_PORTS and not _socket_given(parts.query):
        host, port = parts.hostname or "localhost", parts.port or DATABASE_PORTS[scheme]
        why = probe_tcp(host, port, timeout)
        if why is not None:
            raise TrackingUriError(
                f"MLFLOW_TRACKING_URI {shown}: no database answers at {host}:{port} ({why})"
            )
    elif scheme == "sqlite":
        database = uri.split("?", 1)[0].removeprefix("sqlite:///")
        why = writable_location(Path(database)) if database and database != ":memory:" else None
        if why is not None:
            raise TrackingUriError(f"MLFLOW_TRACKING_URI {shown}: the SQLite store cannot be written ({why})")
    elif scheme in ("file", ""):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise TrackingUriError(
                f"MLFLOW_TRACKING_URI {shown}: MLflow no longer logs to a file store; use a SQLite "
                "store (sqlite:///mlflow.db) or a server (or set MLFLOW_ALLOW_FILE_STORE=true)"
            )
        why = writable_location(Path(parts.path if scheme else uri) / "meta.yaml")
        if why is not None:
            raise TrackingUriError(f"MLFLOW_TRACKING_URI {shown}: the file store cannot be written ({why})")
