"""A real single-node Apache Kafka (KRaft broker+controller) run from the official jars.

Machines without a Docker engine still get a real broker: Maven fetches
``org.apache.kafka:kafka_2.13`` and its runtime dependencies into a cache
outside the repository, and we run ``kafka.Kafka`` with a generated
``server.properties``. Each client port gets its own directory under the state
dir (``kafka-<port>/``: data, config, pid, log), so a test broker and a demo
broker can coexist and ``down`` only ever stops the process it started.
``secure=True`` (`pfilter kafka up --secure`) runs the SASL_SSL variant with
ACLs described in ``streams/kafka/secure.py``, in ``kafka-<port>-secure/``.

Nothing here logs record contents; the broker's own output goes to
``broker.log`` in that directory.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from typing import Any

from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka import localproc

POM = Path(__file__).with_name("pom.xml")

#: How long `up` waits for the broker to answer a metadata request. A cold JVM
#: on 2 shared cores formats and starts in ~5-10 s; 90 s leaves room for a
#: loaded CI machine without hiding a broker that will never come up.
START_TIMEOUT_S = 90.0
#: Grace period for a clean shutdown (controlled shutdown + log flush) before
#: SIGKILL. Single-node shutdown takes 1-3 s; 30 s covers a large flush.
STOP_TIMEOUT_S = 30.0
#: Marker written after Maven finished copying, so a half-fetched cache is
#: never mistaken for a complete one.

_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


class BrokerError(PFilterError, RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    home: Path

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"


def _cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as Kafka makes them. Never one
    that starts with "-": the storage tool would read it as an option and refuse to format
    (1 start in 64 failed that way), which Kafka's own Uuid.randomUuid avoids the same way."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class LocalBroker:
    """Lifecycle of the project's own broker for one client port."""

    def __init__(self, settings: Settings, *, secure: bool = False) -> None:
        self.settings = settings
        self.secure = secure
        self.port = settings.kafka_port
        self.controller_port = settings.controller_port
        self.home = Path(settings.state_dir) / (f"kafka-{self.port}-secure" if secure else f"kafka-{self.port}")
        self.jars = settings.jars_dir

    # ------------------------------------------------------------------ secure
    @property
    def secure_files(self):  # -> secure.SecureFiles
        from streams.kafka import secure

        return secure.SecureFiles(self.home / "secure")

    def client_settings(self, user: str | None = None, base: Settings | None = None) -> Settings:
        """``base`` (default: this broker's settings) pointed at this broker; on a secure
        one authenticated as ``user`` (default: admin)."""
        changes: dict[str, Any] = {"kafka_bootstrap_servers": self.bootstrap}
        if self.secure:
            from streams.kafka import secure

            changes |= secure.client_settings(self.secure_files, user or secure.ADMIN)
        else:  # our plaintext broker, whatever the settings say about other clusters
            changes |= {"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}
        return (base or self.settings).model_copy(update=changes)

    def _engine_topics(self) -> dict[str, str]:
        from streams.wiring import policy_for_topics

        return {e.name: e.topic for e in policy_for_topics(self.settings).engines}

    # ------------------------------------------------------------------ paths
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    # ------------------------------------------------------------------ fetch
    def fetched(self) -> bool:
        return (self.jars / localproc.FETCHED_MARKER).exists()

    def fetch(self, *, quiet: bool = True) -> Path:
        """Fetch the broker jars with Maven (idempotent; a no-op once cached)."""
        return localproc.maven_fetch(
            self.jars, POM, ["dependency:copy-dependencies", "-DoutputDirectory={tmp}", "-DincludeScope=runtime",
                             f"-Dkafka.version={self.settings.kafka_version}"],
            what="the Kafka jars", version=self.settings.kafka_version, error=BrokerError, quiet=quiet,
            missing_hint="set KAFKA_BOOTSTRAP_SERVERS to an existing broker")

    # ------------------------------------------------------------------ status
    def _pid(self) -> int | None:
        return localproc.read_pid(self.pid_file, lambda pid: _is_our_broker(pid, self.config_file))

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(running=pid is not None, pid=pid, bootstrap=self.bootstrap, home=self.home)

    # ------------------------------------------------------------------ up
    def up(self, *, timeout: float = START_TIMEOUT_S) -> BrokerStatus:
        """Start the broker, or reuse the one this state dir already runs."""
        st = self.status()
        if st.running:
            _wait_ready(self._admin_config(), st.pid, self.log_file, timeout)
            return st
        for port, what in ((self.port, "PFILTER_KAFKA_PORT"), (self.controller_port, "PFILTER_KAFKA_CONTROLLER_PORT")):
            if not localproc.port_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already taken by another process; "
                    f"pick another with {what}=<port> (or --port), or use a running broker "
                    "through KAFKA_BOOTSTRAP_SERVERS"
                )
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java (java) is not on PATH: the local broker needs a JDK/JRE 17+.")
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        extra: dict[str, str] = {}
        if self.secure:
            from streams.kafka import secure

            users = [secure.WORKER, *(secure.engine_user(e) for e in self._engine_topics())]
            files = secure.prepare(self.home, users)
            extra = secure.server_properties(files, self.port, self.controller_port)
        self._write_config(extra)
        if not (self.data_dir / "meta.properties").exists():
            self._format(java)
        log = open(self.log_file, "ab")
        heap = self.settings.kafka_heap
        proc = subprocess.Popen(
            [
                java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp", f"{self.jars}/*", "kafka.Kafka", str(self.config_file),
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI; `down` signals it by pid
            cwd=self.home,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        try:
            _wait_ready(self._admin_config(), proc.pid, self.log_file, timeout)
            if self.secure:
                self._set_up_acls()
        except BrokerError:
            self._kill(proc.pid)
            raise
        return self.status()

    def _admin_config(self) -> dict[str, Any]:
        from streams.kafka.clients import base_config

        return base_config(self.client_settings())

    def _set_up_acls(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        from streams.kafka import secure

        admin = AdminClient(self._admin_config())
        try:
            secure.apply_acls(admin, secure.acl_bindings(self.settings, self._engine_topics()))
        except KafkaException as exc:
            raise BrokerError(f"creating the ACLs failed: {exc.args[0].str()}") from None
        secure.write_env_files(self.secure_files)

    def _write_config(self, extra: dict[str, str] | None = None) -> None:
        cfg = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # single node: every internal topic has one replica
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # no reason to wait for more members on a one-machine broker
            "group.initial.rebalance.delay.ms": "0",
            # compaction must actually run for the erasure deadline to hold
            "log.cleaner.enable": "true",
            "log.cleaner.backoff.ms": "5000",
            **(extra or {}),
        }
        # 0600: a secure broker's file holds its inter-broker password and key password
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in cfg.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2)

    def _format(self, java: str) -> None:
        cluster_id = _cluster_id()
        scram: list[str] = []
        if self.secure:
            from streams.kafka import secure

            scram = secure.scram_args(self.secure_files)
        proc = subprocess.run(
            [java, "-cp", f"{self.jars}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self.config_file), "--standalone", *scram],
            capture_output=True, text=True,
        )
        with open(self.log_file, "a") as fh:
            fh.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting the broker storage failed (exit {proc.returncode}); see {self.log_file}:\n"
                + localproc.tail(self.log_file)
            )

    # ------------------------------------------------------------------ down
    def down(self, *, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker this state dir started; True if one was running."""
        pid = self._pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        self._kill(pid, timeout=timeout)
        return True

    def _kill(self, pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
        localproc.kill(pid, timeout)

    def destroy(self) -> None:
        """Stop and delete all data of this broker (tests use a throwaway one)."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------- helpers
def _is_our_broker(pid: int, config_file: Path) -> bool:
    """Only a live kafka.Kafka process started with our config file is ours."""
    args = localproc.cmdline(pid) if localproc.alive(pid) else []
    return b"kafka.Kafka" in args and str(config_file).encode() in args


def _wait_ready(config: dict[str, Any], pid: int | None, log_file: Path, timeout: float) -> None:
    """Wait until the broker answers a metadata request (not merely accepts TCP).

    ``config``: the client config to ask with (the admin's, on a secure broker)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**config, "log_level": 0, "logger": _silent})
    deadline = time.monotonic() + timeout
    while True:
        if pid is not None and not localproc.alive(pid):
            raise BrokerError(
                f"the broker process exited during start-up; log: {log_file}\n{localproc.tail(log_file)}"
            )
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
            pass
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the broker did not become ready within {timeout:.0f}s; log: {log_file}\n{localproc.tail(log_file)}"
            )
        time.sleep(0.3)


class _Silent:
    """librdkafka logger that drops connection-refused chatter while we poll."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str):  # debug/info/warning/error/...
        return self.log


_silent = _Silent()
