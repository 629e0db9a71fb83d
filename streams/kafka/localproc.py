"""What the project's two local JVM services (the Kafka broker, streams.kafka.broker, and the
schema registry, streams.kafka.registry) share: fetching their artifacts with Maven into a
cache directory, and the life of a process started from a pid file (is it alive, is it
ours, stop it). Each service keeps what differs: its Maven goal, its command line, its
readiness check."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from streams.errors import PFilterError

#: Marker file of a complete fetch (a fetch interrupted half-way leaves none).
FETCHED_MARKER = ".fetched"


def maven_fetch(dest: Path, pom: Path, goal_args: list[str], *, what: str, version: str,
                error: type[PFilterError], quiet: bool = True, missing_hint: str,
                finish: Callable[[Path], None] | None = None) -> Path:
    """Run one Maven goal into ``dest.partial``, then rename it to ``dest`` (idempotent: a
    no-op once ``dest`` holds a complete fetch). ``finish(tmp)`` checks or tidies the
    result before the rename and raises ``error`` if it is unusable."""
    if (dest / FETCHED_MARKER).exists():
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(f"Maven (mvn) is not on PATH: it fetches {what} from Maven Central. "
                    f"Install it (apt-get install maven) or {missing_hint}.")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [mvn, "-B", "-f", str(pom), *[a.replace("{tmp}", str(tmp)) for a in goal_args]]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise error(f"Maven could not fetch {what} {version} (exit {proc.returncode}):\n{tail}")
    if finish is not None:
        finish(tmp)
    (tmp / FETCHED_MARKER).write_text(version)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def read_pid(pid_file: Path, ours: Callable[[int], bool]) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ``ours`` (a recycled pid is not)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if ours(pid) else None


def cmdline(pid: int) -> list[bytes]:
    """The process's arguments ([] when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split(")")[-1].split()[0] == "Z":
                os.waitpid(pid, os.WNOHANG)
                return False
    except (FileNotFoundError, ChildProcessError, IndexError):
        pass
    return True


def kill(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid):
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
