"""Real servers for the team-and-cluster tests, bound to 127.0.0.1 on a free port and always
stopped: a throw-away PostgreSQL cluster and an MLflow tracking server."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER, PG_PASSWORD = "bench", "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    port: int

    def url(self, password: str = PG_PASSWORD, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"


def _postgres_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.skip(
            "PostgreSQL server binaries not found: install them with apt-get install postgresql "
            "(make test does so as root)"
        )
    return Path(found[-1]).parent


def _demote():
    """PostgreSQL refuses to run as root: as root, the server runs as Debian's postgres user."""
    if os.geteuid() != 0:
        return None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and no 'postgres' user to run the server as")

    def become() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return become, user


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A new cluster in a temporary directory, password authentication (scram-sha-256) for the
    user ``bench``, TCP on 127.0.0.1 only, no Unix socket; stopped and deleted afterwards."""
    bin_dir = _postgres_binaries()
    become, user = _demote()
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    port = free_port()
    run = dict(preexec_fn=become, capture_output=True, text=True, timeout=120, cwd=root)
    try:
        subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", PG_USER, "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "--no-sync"], check=True, **run,
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -F"
        started = subprocess.run(
            [bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start"],
            **run,
        )  # fmt: skip
        if started.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")
        yield Postgres(port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        stop_process_group(self.process)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` with a SQLite backend and a local artifact root under ``root``, on
    127.0.0.1; stopped (the whole process group) afterwards, even when the test fails."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start:\n{(root / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield MlflowServer(url, process)
    finally:
        stop_process_group(process)
        log.close()


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop ``process`` and its children (the server's workers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
