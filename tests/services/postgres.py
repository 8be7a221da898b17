"""A throwaway PostgreSQL cluster (Debian ``postgresql``) on 127.0.0.1: initdb + pg_ctl.

The cluster lives in a temp folder with trust authentication on a free loopback port
and fsync off (tests only). PostgreSQL refuses to run as root, so as root the binaries
run as the ``postgres`` user (``runuser``). Stopped with ``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.services import free_port

__all__ = ["PostgresCluster", "find_pg_bin", "postgres_cluster", "run_postgres"]


def find_pg_bin() -> Path | None:
    """The newest installed server's bin folder (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PostgresCluster:
    """One cluster's folder and port; ``stop`` and ``start`` again simulate a store outage."""

    def __init__(self, bin_dir: Path, workdir: Path, port: int) -> None:
        self.bin_dir, self.workdir, self.port = bin_dir, workdir, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.workdir / "data"), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=off -c max_connections=200"
        self._ctl("-l", str(self.workdir / "postgres.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@contextlib.contextmanager
def postgres_cluster(bin_dir: Path) -> Iterator[PostgresCluster]:
    """Start a cluster and yield it; stopped and deleted on exit.

    The cluster gets its own folder directly under the temp root: pytest's per-user
    temp folders are private to root, which the ``postgres`` user cannot enter.
    """
    workdir = Path(tempfile.mkdtemp(prefix="stella-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    initdb = [str(bin_dir / "initdb"), "-D", str(workdir / "data"), "-U", "postgres", "-A", "trust"]
    subprocess.run(
        _as_postgres([*initdb, "-E", "UTF8", "--no-locale"]), check=True, capture_output=True, timeout=120
    )
    cluster = PostgresCluster(bin_dir, workdir, free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def run_postgres(bin_dir: Path) -> Iterator[str]:
    """Start a cluster; yield ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    with postgres_cluster(bin_dir) as cluster:
        yield cluster.url
