"""A throwaway PostgreSQL cluster for the store's tests: initdb into a temporary directory,
pg_ctl start on a free port (TCP on 127.0.0.1 and a socket in the directory), stop and delete
at the end. Found on PATH, else in /usr/lib/postgresql/*/bin; run as the `postgres` user (or
`nobody`) when the tests run as root, since PostgreSQL refuses to. Durability settings are off
(fsync) unless asked for: the tests kill writers, never the server.

tests/conftest.py turns it into the session-scoped `postgres_url` fixture, which skips, saying
why, only where no PostgreSQL binaries exist.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{candidate}/initdb") and os.path.exists(f"{candidate}/pg_ctl"):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runner() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL as")


@contextmanager
def cluster(durable: bool = False) -> Iterator[str]:
    """A running cluster's URL (database postgres, user meterspec, no password). `durable`
    keeps PostgreSQL's default fsync and synchronous commit (benchmarks/ingest.py)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
    user = _runner()
    root = Path(tempfile.mkdtemp(prefix="meterspec-pg-"))
    data = root / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), user=user, capture_output=True, text=True,
                              check=False, cwd=root, timeout=120)

    try:
        made = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "meterspec",
                   "--auth=trust", "-E", "UTF8", "--no-locale")
        if made.returncode:
            raise RuntimeError(f"initdb failed: {made.stderr or made.stdout}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        started = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                      str(root / "log"), "-w", "-t", "60", "start")
        if started.returncode:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}{log}")
        try:
            yield f"postgresql://meterspec@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
