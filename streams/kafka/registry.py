"""A real Confluent-compatible schema registry (Apicurio Registry) run from Maven Central.

The Avro path (``SCHEMA_REGISTRY_URL``) is otherwise only tested against
confluent-kafka's in-process mock. Apicurio Registry publishes its runnable
Quarkus build on Maven Central (``io.apicurio:apicurio-registry-app:<v>:all``,
a tar.gz with ``quarkus-run.jar``, ``app/``, ``lib/`` and ``quarkus/``), so
like the broker (``streams/kafka/broker.py``) Maven fetches it into a cache
outside the repository and we run it with a JVM. It serves the Confluent API
at ``/apis/ccompat/v7``, which confluent-kafka's ``SchemaRegistryClient`` uses.

It needs Java 21+ while the broker runs on 17, so the JVM is found separately
(:func:`find_java`). Storage is Apicurio's default in-memory H2: schemas live
as long as the process, which is what tests and the demo want. It listens on
loopback only; its management interface (health, metrics) gets a port the OS
picks, since nothing here reads it. Each port gets its own directory under the
state dir (``registry-<port>/``: pid, log), and ``down`` only stops the process
that directory started. The registry's own output goes to ``registry.log``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka import localproc

POM = Path(__file__).with_name("registry-pom.xml")

#: Java feature release Apicurio Registry 3.x is compiled for (its jars are class file 65).
MIN_JAVA = 21
#: How long `up` waits for the Confluent API to answer. A cold start measured
#: 4.7-5.6 s on 2 shared cores; 60 s leaves room for a loaded CI machine
#: without hiding a registry that will never come up.
START_TIMEOUT_S = 60.0
#: Grace period for a clean Quarkus shutdown before SIGKILL (it takes ~1 s;
#: there is nothing to flush with in-memory storage).
STOP_TIMEOUT_S = 15.0
#: Per-request timeout while polling for readiness: a local HTTP answer takes
#: milliseconds; 2 s keeps one stuck request from eating the start budget.
_POLL_TIMEOUT_S = 2.0
#: Marker written after Maven finished unpacking, so a half-fetched cache is
#: never mistaken for a complete one.
#: Path of the Confluent-compatible API under the registry's root.
CCOMPAT_PATH = "/apis/ccompat/v7"
#: First Java release whose JVM writes an AOT cache in one run (-XX:AOTCacheOutput, JEP 514).
AOT_MIN_JAVA = 25
#: How long the training JVM may take to exit: it assembles the cache (~100 MB) from the
#: training data in a child JVM first, ~10-20 s on 2 loaded cores; SIGKILL would leave none.
_AOT_WRITE_TIMEOUT_S = 120.0
#: Marker on the JVM command line that says which state dir started it.
_HOME_PROP = "-Dpfilter.registry.home="


class RegistryError(PFilterError, RuntimeError):
    """The local schema registry could not be fetched, started or stopped; the message says why."""


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    url: str
    home: Path

    @property
    def log_file(self) -> Path:
        return self.home / "registry.log"


def java_major(java: str | Path) -> int | None:
    """Feature release of a ``java`` binary (25 for 25.0.3, 8 for 1.8.0), or None if it does not run.

    The JDK's ``release`` file answers without starting a JVM; else ``java -version``."""
    java = Path(java)
    release = java.resolve().parent.parent / "release"
    text = ""
    try:
        text = release.read_text()
    except OSError:
        pass
    m = re.search(r'JAVA_VERSION="([^"]+)"', text)
    if m is None:
        try:
            proc = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
        if m is None:
            return None
    parts = m.group(1).split(".")
    try:
        major = int(parts[0])
        return int(parts[1]) if major == 1 and len(parts) > 1 else major
    except ValueError:
        return None


def _candidates() -> list[Path]:
    found: list[Path] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(Path(java_home) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():  # Debian/Ubuntu packages and Temurin's .deb install side by side here
        found.extend(sorted(jvm.glob("*/bin/java"), reverse=True))
    return found


def find_java(settings: Settings) -> Path:
    """A ``java`` of release 21+: ``PFILTER_REGISTRY_JAVA`` if set (and then only that one),
    else ``$JAVA_HOME``, ``java`` on PATH, or any JDK under /usr/lib/jvm."""
    if settings.registry_java is not None:
        major = java_major(settings.registry_java)
        if major is None or major < MIN_JAVA:
            raise RegistryError(
                f"PFILTER_REGISTRY_JAVA={settings.registry_java} is "
                + ("not a runnable java" if major is None else f"Java {major}")
                + f"; the schema registry needs Java {MIN_JAVA}+"
            )
        return settings.registry_java
    seen: list[str] = []
    for java in _candidates():
        if not java.exists():
            continue
        major = java_major(java)
        seen.append(f"{java} ({'?' if major is None else major})")
        if major is not None and major >= MIN_JAVA:
            return java
    raise RegistryError(
        f"no Java {MIN_JAVA}+ found for the schema registry (looked at: {', '.join(seen) or 'nothing'}); "
        f"install one (e.g. apt-get install openjdk-{MIN_JAVA}-jre-headless) or set PFILTER_REGISTRY_JAVA"
    )


class LocalRegistry:
    """Lifecycle of the project's own schema registry for one port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.registry_port
        self.home = Path(settings.state_dir) / f"registry-{self.port}"
        self.dist = settings.registry_dist_dir

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        """What ``SCHEMA_REGISTRY_URL`` should be set to (the Confluent-compatible API)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "registry.log"

    # ------------------------------------------------------------------ fetch
    def fetched(self) -> bool:
        return (self.dist / localproc.FETCHED_MARKER).exists()

    def fetch(self, *, quiet: bool = True) -> Path:
        """Fetch and unpack the registry with Maven (idempotent; a no-op once cached)."""
        version = self.settings.registry_version

        def finish(tmp: Path) -> None:
            if not (tmp / "quarkus-run.jar").exists():
                raise RegistryError(f"the Apicurio Registry {version} archive has no quarkus-run.jar (in {tmp})")
            shutil.rmtree(tmp / ".mvn-build", ignore_errors=True)
            shutil.rmtree(tmp / "PaxHeaders.X", ignore_errors=True)  # tar metadata Maven unpacks as files

        return localproc.maven_fetch(
            self.dist, POM, ["dependency:unpack-dependencies", "-DoutputDirectory={tmp}",
                             f"-Dapicurio.version={version}", "-Dpfilter.build.dir={tmp}/.mvn-build"],
            what="Apicurio Registry", version=version, error=RegistryError, quiet=quiet,
            missing_hint="set SCHEMA_REGISTRY_URL to an existing registry", finish=finish)

    # ------------------------------------------------------------------ status
    def _pid(self) -> int | None:
        return localproc.read_pid(self.pid_file, lambda pid: _is_our_registry(pid, self.home))

    def status(self) -> RegistryStatus:
        pid = self._pid()
        return RegistryStatus(running=pid is not None, pid=pid, url=self.url, home=self.home)

    # ------------------------------------------------------------------ up
    def up(self, *, timeout: float = START_TIMEOUT_S) -> RegistryStatus:
        """Start the registry, or reuse the one this state dir already runs."""
        st = self.status()
        if st.running:
            _wait_ready(self.url, st.pid, self.log_file, timeout)
            return st
        if not localproc.port_free(self.port):
            raise RegistryError(
                f"port {self.port} on 127.0.0.1 is already taken by another process; pick another with "
                "PFILTER_REGISTRY_PORT=<port> (or --port), or use a running registry through SCHEMA_REGISTRY_URL"
            )
        java = find_java(self.settings)
        self.fetch()
        aot = self._aot_file(java)
        extra = [f"-XX:AOTCache={aot}"] if aot.exists() else []
        proc = self._start(java, self.port, extra)
        self.pid_file.write_text(str(proc.pid))
        try:
            _wait_ready(self.url, proc.pid, self.log_file, timeout)
        except RegistryError:
            _kill(proc.pid)
            self.pid_file.unlink(missing_ok=True)
            raise
        return self.status()

    def _start(self, java: Path, port: int, extra: list[str]) -> subprocess.Popen:
        heap = self.settings.registry_heap
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            [
                str(java), f"-Xmx{heap}", f"-Xms{heap}",
                # Serial GC: a small heap on 2 shared cores; parallel GC threads would only
                # compete with the broker and the worker for nothing
                "-XX:+UseSerialGC",
                # C1 only: start-up is mostly JIT work and a test registry serves a few dozen
                # requests; measured 19.7 -> 10.6 s to ready at load 5 on 2 cores
                "-XX:TieredStopAtLevel=1",
                *extra,
                "-Djava.awt.headless=true", f"{_HOME_PROP}{self.home}",
                "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={port}",
                # health/metrics interface: loopback, a port the OS picks (nothing reads it)
                "-Dquarkus.management.host=127.0.0.1", "-Dquarkus.management.port=0",
                # one log line per request would only grow the log; errors still show
                "-Dquarkus.http.access-log.enabled=false",
                "-jar", str(self.dist / "quarkus-run.jar"),
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI; `down` signals it by pid
            cwd=self.home,
        )
        log.close()
        return proc

    # ------------------------------------------------------------------ AOT cache
    def _aot_file(self, java: Path) -> Path:
        """Ahead-of-time cache (JEP 483/514) of this JVM's classes for the registry: with it
        and C1 the start measured 5.1 s instead of 10.6 s (19.7 s with neither) at load 5.
        One per Java release: a cache from another JVM is refused (with a warning, not an error)."""
        return self.dist / f"registry-java{java_major(java)}.aot"

    def train(self, *, timeout: float = START_TIMEOUT_S) -> Path | None:
        """Create the AOT cache by one start and stop (Java 25+; `fetch` does it once, so
        `make install` pays it, not every test run). None when this Java cannot, or it failed:
        the registry then starts without the cache, only slower."""
        try:
            java = find_java(self.settings)
        except RegistryError:
            return None
        major = java_major(java)
        if major is None or major < AOT_MIN_JAVA:
            return None
        target = self._aot_file(java)
        if target.exists():
            return target
        with socket.socket() as sock:  # a port nobody uses, only for this one start
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        tmp = target.with_name(target.name + ".partial")
        tmp.unlink(missing_ok=True)
        proc = self._start(java, port, [f"-XX:AOTCacheOutput={tmp}"])
        try:
            _wait_ready(f"http://127.0.0.1:{port}{CCOMPAT_PATH}", proc.pid, self.log_file, timeout)
        except RegistryError:
            _kill(proc.pid)
            tmp.unlink(missing_ok=True)
            return None
        _kill(proc.pid, timeout=_AOT_WRITE_TIMEOUT_S)  # as it exits the JVM assembles the cache
        tmp.with_name(tmp.name + ".config").unlink(missing_ok=True)  # the training data, used up
        if not tmp.exists() or tmp.stat().st_size == 0:
            tmp.unlink(missing_ok=True)
            return None
        tmp.rename(target)
        return target

    # ------------------------------------------------------------------ down
    def down(self, *, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the registry this state dir started; True if one was running."""
        pid = self._pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        _kill(pid, timeout=timeout)
        return True

    def destroy(self) -> None:
        """Stop it and delete its directory (tests use a throwaway one)."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------- helpers
def _is_our_registry(pid: int, home: Path) -> bool:
    """Only a live JVM started with this state dir's marker is ours."""
    return localproc.alive(pid) and f"{_HOME_PROP}{home}".encode() in localproc.cmdline(pid)


def _kill(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    localproc.kill(pid, timeout)


def _wait_ready(url: str, pid: int | None, log_file: Path, timeout: float) -> None:
    """Wait until the Confluent API lists subjects (not merely accepts TCP)."""
    deadline = time.monotonic() + timeout
    while True:
        if pid is not None and not localproc.alive(pid):
            raise RegistryError(f"the schema registry exited during start-up; log: {log_file}\n{localproc.tail(log_file)}")
        try:
            with urllib.request.urlopen(f"{url}/subjects", timeout=_POLL_TIMEOUT_S) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or still starting
        if time.monotonic() > deadline:
            raise RegistryError(
                f"the schema registry did not become ready within {timeout:.0f}s; log: {log_file}\n{localproc.tail(log_file)}"
            )
        time.sleep(0.2)
