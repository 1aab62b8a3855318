"""A real single-node Apache Kafka (KRaft: one process is broker and controller) on loopback ports.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` (which pins the version) and
are kept in ``.work/kafka-<version>/libs`` under the repository, fetched on the first run only.
``running_kafka()`` writes a ``server.properties`` into a temporary directory, formats the storage
with a random cluster id, starts ``java -cp 'libs/*' kafka.Kafka server.properties``, waits until the
broker answers a metadata request, and at the end stops it (SIGTERM, then SIGKILL) and deletes the
directory. The broker can be stopped and started again in between, on the same log directories and ports.

``scripts/bootstrap --test`` installs Java 17 and Maven where they are missing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.read_text(), which calls
    # open_text(); both are deprecated on Python 3.11 and 3.12 (and warn while `kafka` is imported).
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    import kafka.net.inet  # type: ignore[import-untyped]
    from kafka import KafkaAdminClient, KafkaConsumer

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
CACHE = REPO / ".work"
HOST = "127.0.0.1"
NODE_ID = 1
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
    "-Dlog4j2.shutdownHookEnabled=false",  # keep logging until the broker's own shutdown hook is done
)
FETCH_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

# kafka-python 3.1 adds `net=` (the network backend) and picks its experimental asyncio backend by itself
# when a client is built inside a running event loop. Clients name the plain selector backend: `net=` where
# the installed kafka-python knows it; on 3.0.x (one backend, the selector loop; unknown options are
# refused) the OS selector it runs on.
NET_BACKEND: dict[str, Any] = (
    {"net": "selector"} if "net" in KafkaConsumer.DEFAULT_CONFIG else {"selector": selectors.DefaultSelector}
)


def _close_refused_sockets() -> None:
    """Make kafka-python 3.0 close the socket of a connection attempt that fails.

    kafka-python 3.0.12 (and its master branch in August 2026) raises out of
    ``KafkaNetSocket.sock_connect`` without closing the socket when the broker refuses the connection
    or the attempt times out. The garbage collector closes it later with a ``ResourceWarning``, which
    this suite turns into an error in whichever test happens to be running then, and no warning filter
    can follow it there: the socket stays reachable from the exception kafka-python logs ("Connection
    failed: ...") until pytest drops the captured log records. Every client that outlives a broker
    restart meets this, so the harness closes those sockets itself, for the test process only. Later
    kafka-python versions moved this code (``kafka.net.backend.selector``): there nothing is patched,
    and the ResourceWarnings in restart tests say whether the leak is still there.
    """
    factory = getattr(kafka.net.inet, "KafkaNetSocket", None)
    original = getattr(factory, "sock_connect", None)
    if factory is None or original is None or getattr(original, "_proficio_closes_socket", False):
        return

    async def sock_connect(self: Any, net: Any, sock: socket.socket, sockaddr: Any, timeout_at: Any = None) -> Any:
        try:
            return await original(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    sock_connect._proficio_closes_socket = True  # type: ignore[attr-defined]
    factory.sock_connect = sock_connect


_close_refused_sockets()

_LOG4J2 = """\
# Written by tests/support/kafka.py. Everything goes to stdout, which the harness sends to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:proficio.kafka.loglevel:-INFO}
rootLogger.appenderRef.out.ref = OUT
"""


def kafka_version() -> str:
    """The Kafka version ``deploy/kafka/pom.xml`` pins."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError(f"{POM} has no <kafka.version> property")
    return found.group(1).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} is not installed: run scripts/bootstrap --test, which installs it with apt-get")
    return path


def kafka_libs() -> Path:
    """The broker's jars: ``.work/kafka-<version>/libs``, fetched with Maven unless present for this pom."""
    pom_digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    home = CACHE / f"kafka-{kafka_version()}"
    libs = home / "libs"
    stamp = ".pom-sha256"
    if (libs / stamp).is_file() and (libs / stamp).read_text().strip() == pom_digest:
        return libs
    mvn = _require("mvn")
    home.mkdir(parents=True, exist_ok=True)
    # Fetch into a directory of this process's own and rename it into place, so an interrupted fetch
    # leaves nothing half-filled behind and two test runs fetching at once do not mix their files.
    partial = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=home))
    try:
        done = subprocess.run(
            [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={partial}"],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            raise RuntimeError(
                f"fetching Kafka's jars with Maven failed (exit {done.returncode}):\n"
                + _tail(done.stdout + done.stderr, 40)
            )
        (partial / stamp).write_text(pom_digest + "\n")
        if libs.exists():
            stale = Path(tempfile.mkdtemp(prefix="libs.stale-", dir=home))
            libs.rename(stale / "libs")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            partial.rename(libs)
        except OSError:
            if not (libs / stamp).is_file():  # another run put its copy in place first: use that one
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return libs


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _cluster_id() -> str:
    """A random cluster id as Kafka writes one (URL-safe base64 of 16 bytes, unpadded), not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        # One node in KRaft mode, both broker and controller, in a dynamic quorum of one voter
        # (the storage is formatted with --standalone).
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        # Topics exist only when a test creates them, with the partitions it asks for.
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
        # A single node cannot hold more than one replica of the internal topics; few partitions make
        # the first consumer group and the first transaction quick to set up.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Groups form at once, and tests may use short consumer session timeouts.
        "group.initial.rebalance.delay.ms": 0,
        "group.min.session.timeout.ms": 1000,
        # Small segments (1 MiB is the least Kafka accepts), so tests can roll and delete them.
        "log.segment.bytes": 1048576,
    }
    return "".join(f"{name}={value}\n" for name, value in settings.items())


class KafkaBroker:
    """One broker process and its directory. ``bootstrap_servers`` stays the same across stop and start."""

    def __init__(self, libs: Path, directory: Path) -> None:
        self.libs = libs
        self.directory = directory
        self.version = kafka_version()
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap_servers = f"{HOST}:{self.port}"
        self.config_file = directory / "server.properties"
        self.log_file = directory / "kafka.log"
        self.log_dir = directory / "data"
        self._log4j = directory / "log4j2.properties"
        self._process: subprocess.Popen[bytes] | None = None
        # The broker dies with the test process (SIGKILLed or not): it is started under `setpriv
        # --pdeathsig`, whose signal comes when the *thread* that started it ends. One long-lived thread
        # therefore starts every process, whichever thread calls start().
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-broker")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.log_file.read_text(encoding="utf-8", errors="replace"), lines)
        except FileNotFoundError:
            return "(no log)"

    def _java(self, main: str, *args: str, level: str = "INFO") -> list[str]:
        command = [
            _require("java"),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._log4j}",
            f"-Dproficio.kafka.loglevel={level}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]
        setpriv = shutil.which("setpriv")
        return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command

    def format(self) -> None:
        """Write the configuration and format the empty log directory (once, before the first start)."""
        self.config_file.write_text(_server_properties(self.port, self.controller_port, self.log_dir))
        self._log4j.write_text(_LOG4J2)
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self.config_file),
            "--standalone",
            level="WARN",
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka's storage failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the broker and return once it answers metadata requests as an unfenced broker."""
        if self.running:
            raise RuntimeError("the Kafka broker is already running")
        command = self._java("kafka.Kafka", str(self.config_file))

        def spawn() -> subprocess.Popen[bytes]:
            with self.log_file.open("ab") as log:
                log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} harness: starting the broker\n".encode())
                log.flush()
                return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        self._process = self._spawner.submit(spawn).result()
        try:
            self._wait_until_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, deadline: float) -> None:
        problem = "it did not open its port"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RuntimeError(f"the Kafka broker exited (code {code}) while starting:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.1)
                continue
            try:
                if self._broker_unfenced(max(1.0, deadline - time.monotonic())):
                    return
                problem = "it is listed as fenced"
            except Exception as error:  # any client failure means "not yet": retry until the deadline
                problem = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise RuntimeError(
            f"the Kafka broker on {self.bootstrap_servers} was not ready in time ({problem}):\n{self.log_tail()}"
        )

    def _broker_unfenced(self, timeout: float) -> bool:
        ms = int(min(timeout, 10.0) * 1000)
        admin = self.admin(bootstrap_timeout_ms=ms, request_timeout_ms=ms)
        try:
            brokers = admin.describe_cluster()["brokers"]
        finally:
            admin.close()
        return any(b["broker_id"] == NODE_ID and not b.get("is_fenced", False) for b in brokers)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the broker (SIGTERM, a controlled shutdown; SIGKILL if it takes longer than ``timeout``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        self._spawner.shutdown(wait=True)

    def admin(self, **options: Any) -> Any:
        """A ``KafkaAdminClient`` on this broker; the caller closes it."""
        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **NET_BACKEND, **options)

    def create_topic(self, name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
        """Create a topic and wait until every partition has a leader."""
        admin = self.admin()
        try:
            spec: dict[str, Any] = {"num_partitions": partitions, "replication_factor": 1}
            if configs:
                spec["configs"] = configs
            admin.create_topics({name: spec}, wait_for_metadata=True)
        finally:
            admin.close()


@contextmanager
def running_kafka() -> Iterator[KafkaBroker]:
    """A started single-node KRaft broker on loopback, in a temporary directory deleted at the end."""
    libs = kafka_libs()
    directory = Path(tempfile.mkdtemp(prefix="proficio-kafka-"))
    broker = KafkaBroker(libs, directory)
    try:
        broker.format()
        broker.start()
        yield broker
    finally:
        broker.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":  # a broker by hand: .venv/bin/python -m tests.support.kafka
    with running_kafka() as broker:
        print(f"Kafka {broker.version} on {broker.bootstrap_servers}; log: {broker.log_file}; Ctrl-C stops it")
        try:
            while broker.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
