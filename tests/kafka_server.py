"""A real Apache Kafka broker for tests: Kafka 4.4.0 in KRaft combined mode (broker + controller in one
JVM, no ZooKeeper), run from its Maven Central jars (``org.apache.kafka:kafka_2.13`` and its
dependencies, fetched once by ``ensure_kafka()`` into the git-ignored ``.peers/``), on 127.0.0.1 with
free ports, small heap. ``kill()`` is kill -9; ``start()`` again restarts the same node on the same
ports and log directory (nothing acknowledged is lost: the log is on disk).

:func:`consume` reads a topic back from the beginning and decodes every message as an OTLP
``ExportLogsServiceRequest`` (the ``otlp_proto`` encoding of the collector's kafkareceiver), so tests
count what arrived by ``log.record.uid``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from peers import free_port, kill_process, port_open, stop_process, wait_until
from search_server import java_home

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".peers"
VERSION = "4.4.0"
_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otel-ext</groupId><artifactId>kafka-peer</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{VERSION}</version></dependency>
  </dependencies>
</project>
"""


def ensure_kafka() -> Path:
    """The broker's classpath directory (jars), fetched with Maven once."""
    home = PEERS / f"kafka-{VERSION}"
    lib = home / "lib"
    if (home / ".otel-ext-ready").exists():
        return lib
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "pom.xml").write_text(_POM)
    subprocess.run(["mvn", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                    f"-DoutputDirectory={lib}", "-DincludeScope=runtime"], check=True, timeout=900)
    (home / ".otel-ext-ready").touch()
    return lib


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1."""

    def __init__(self, partitions: int = 3, scram: tuple[str, str] | None = None) -> None:
        """``scram=(user, password)`` adds a SASL_PLAINTEXT listener (SCRAM-SHA-512) with that user."""
        self.lib = ensure_kafka()
        self.scram = scram
        self.sasl_port = free_port()
        self.port = free_port()
        self.controller_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-kafka-"))
        self.partitions = partitions
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str, **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"kafka://{self.bootstrap}/{topic}" + (f"?{q}" if q else "")

    def _java(self, *args: str, **kwargs: Any) -> list[str]:
        return [str(Path(java_home()) / "bin" / "java"), *args]

    def start(self) -> KafkaBroker:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        props = self.workdir / "server.properties"
        if not props.exists():
            sasl = f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}" if self.scram else ""
            props.write_text(
                "process.roles=broker,controller\nnode.id=1\n"
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}{sasl}\n"
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}{sasl}\n"
                + ("listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                   "SASL_PLAINTEXT:SASL_PLAINTEXT\nsasl.enabled.mechanisms=SCRAM-SHA-512\n"
                   "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                   "org.apache.kafka.common.security.scram.ScramLoginModule required;\n" if self.scram else "")
                + "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
                f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}\n"
                f"log.dirs={self.workdir / 'data'}\nnum.partitions={self.partitions}\n"
                "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
                "transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n"
                "offsets.topic.num.partitions=4\ngroup.initial.rebalance.delay.ms=0\n"
                "auto.create.topics.enable=true\nbroker.session.timeout.ms=2000\n"
                "broker.heartbeat.interval.ms=500\n")
            scram = (["--add-scram", f"SCRAM-SHA-512=[name={self.scram[0]},password={self.scram[1]}]"]
                     if self.scram else [])
            done = subprocess.run(self._java("-Xmx256m", "-cp", f"{self.lib}/*", "kafka.tools.StorageTool", "format",
                                             "--config", str(props), f"--cluster-id={cluster_id()}",
                                             "--standalone", *scram),
                                  timeout=120, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"kafka-storage format failed ({done.returncode}):\n{done.stdout[-2000:]}"
                                   f"{done.stderr[-2000:]}")
        self.generation += 1
        log = (self.workdir / f"broker-{self.generation}.out").open("wb")
        self.proc = subprocess.Popen(
            self._java("-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
                       f"{self.lib}/*", "kafka.Kafka", str(props)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)
        if not wait_until(lambda: port_open(self.port) or self.proc is None or self.proc.poll() is not None, 90,
                          interval=0.2) or self.proc.poll() is not None:
            raise RuntimeError("kafka did not start:\n" + self.output()[-3000:])
        return self

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("broker-*.out")))

    def kill(self) -> None:
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(topic, partitions or self.partitions, 1)], request_timeout=20)
        futures[topic].result(30)
        wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 20)


class KafkaCluster:
    """Three nodes on 127.0.0.1: node 1 is the KRaft controller (quorum of one) and a broker, nodes
    2 and 3 are brokers only. Killing brokers 2 and 3 keeps the controller, so the ISR of a topic led
    by node 1 shrinks and producers with acks=all get NOT_ENOUGH_REPLICAS; killing one broker moves
    leadership to an in-sync replica. ``kill(n)`` is kill -9, ``start(n)`` restarts that node on its
    ports and log directory."""

    def __init__(self, nodes: int = 3) -> None:
        self.lib = ensure_kafka()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-kafka-cluster-"))
        self.controller_port = free_port()
        self.ports = {n: free_port() for n in range(1, nodes + 1)}
        self.procs: dict[int, subprocess.Popen[bytes] | None] = dict.fromkeys(self.ports)
        self.cluster = cluster_id()
        self.generation = 0
        self._admin: Any = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def url(self, topic: str, **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"kafka://{self.bootstrap}/{topic}" + (f"?{q}" if q else "")

    def _props(self, node: int) -> Path:
        props = self.workdir / f"node-{node}.properties"
        if props.exists():
            return props
        controller = node == 1
        listeners = f"PLAINTEXT://127.0.0.1:{self.ports[node]}" + (
            f",CONTROLLER://127.0.0.1:{self.controller_port}" if controller else "")
        props.write_text(
            f"process.roles={'broker,controller' if controller else 'broker'}\nnode.id={node}\n"
            f"listeners={listeners}\nadvertised.listeners=PLAINTEXT://127.0.0.1:{self.ports[node]}\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}\n"
            f"log.dirs={self.workdir / f'data-{node}'}\nnum.partitions=1\ndefault.replication.factor=3\n"
            "min.insync.replicas=2\noffsets.topic.replication.factor=3\noffsets.topic.num.partitions=2\n"
            "transaction.state.log.replication.factor=3\ntransaction.state.log.min.isr=2\n"
            "share.coordinator.state.topic.replication.factor=3\ngroup.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=false\nbroker.session.timeout.ms=3000\n"
            "broker.heartbeat.interval.ms=500\nreplica.lag.time.max.ms=3000\n")
        done = subprocess.run([str(Path(java_home()) / "bin" / "java"), "-Xmx256m", "-cp", f"{self.lib}/*",
                               "kafka.tools.StorageTool", "format", "--config", str(props),
                               f"--cluster-id={self.cluster}",
                               "--standalone" if controller else "--no-initial-controllers"],
                              timeout=120, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({done.returncode}):\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}")
        return props

    def start(self, *nodes: int) -> KafkaCluster:
        for node in nodes or tuple(self.ports):
            proc = self.procs[node]
            assert proc is None or proc.poll() is not None, f"node {node} already running"
            props = self._props(node)
            self.generation += 1
            log = (self.workdir / f"node-{node}-{self.generation}.out").open("wb")
            self.procs[node] = subprocess.Popen(
                [str(Path(java_home()) / "bin" / "java"), "-Xmx384m", "-Xms128m", "-XX:+UseSerialGC",
                 "-XX:TieredStopAtLevel=1", "-cp", f"{self.lib}/*", "kafka.Kafka", str(props)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)
        for node in nodes or tuple(self.ports):
            proc = self.procs[node]
            assert proc is not None
            if not wait_until(lambda p=proc, n=node: port_open(self.ports[n]) or p.poll() is not None, 90,
                              interval=0.2) or proc.poll() is not None:
                raise RuntimeError(f"kafka node {node} did not start:\n" + self.output()[-3000:])
        return self

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("node-*.out")))

    def kill(self, *nodes: int) -> None:
        for node in nodes:
            kill_process(self.procs[node])

    def stop(self) -> None:
        for node in sorted(self.ports, reverse=True):  # brokers before the controller
            stop_process(self.procs[node])
        shutil.rmtree(self.workdir, ignore_errors=True)

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def topic_led_by(self, leader: int) -> str:
        """A new one-partition topic (replication factor 3, min.insync.replicas=2, all replicas in
        sync) whose leader is node ``leader``: topics are created until the controller places one so
        (this client cannot pass a replica assignment)."""
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        for _ in range(30):
            topic = f"logs-{uuid.uuid4().hex[:8]}"
            futures = admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                                          request_timeout=30)
            futures[topic].result(60)
            assert wait_until(lambda t=topic: self.isr(t) == sorted(self.ports), 60), self.isr(topic)
            # metadata from another broker may not list the partition yet: wait for a known leader
            assert wait_until(lambda t=topic: self.leader(t) > 0, 60), topic
            if self.leader(topic) == leader:
                return topic
        raise RuntimeError(f"no topic led by node {leader} after 30 tries")

    def leader(self, topic: str, partition: int = 0) -> int:
        """The partition's leader node, or -1 while the metadata does not name one."""
        from confluent_kafka import KafkaException

        try:
            meta = self.admin().list_topics(topic, timeout=10).topics[topic]
            return int(meta.partitions[partition].leader)
        except (KeyError, KafkaException):
            return -1

    def isr(self, topic: str, partition: int = 0) -> list[int]:
        try:
            meta = self.admin().list_topics(topic, timeout=10).topics[topic]
            return sorted(meta.partitions[partition].isrs)
        except Exception:  # noqa: BLE001 - metadata not there yet
            return []


def consume(bootstrap: str, topic: str, timeout: float = 15.0, expect: int | None = None,
            group: str | None = None) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) in ``topic`` from the beginning, read until ``expect`` messages arrived or the
    topic stayed quiet for 2 s (bounded by ``timeout``)."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"reader-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if got and time.monotonic() - quiet_since > 2.0 and (expect is None or len(got) >= expect):
                    break
                continue
            got.append((msg.key(), msg.value()))
            quiet_since = time.monotonic()
    finally:
        consumer.close()
    return got


def record_uids(messages: list[tuple[bytes | None, bytes]]) -> list[str]:
    """``log.record.uid`` of every log record in every message (duplicates kept)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    uids = []
    for _, value in messages:
        request = ExportLogsServiceRequest.FromString(value)
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    for kv in record.attributes:
                        if kv.key == "log.record.uid":
                            uids.append(kv.value.string_value)
    return uids


if __name__ == "__main__":
    print(ensure_kafka())
    broker = KafkaBroker().start()
    print("started", broker.bootstrap, port_open(broker.port))
    broker.stop()


def cluster_id() -> str:
    """A Kafka cluster id as Kafka's own ``Uuid.randomUuid().toString()`` makes them: the URL-safe
    base64 of 16 random bytes without padding (a hex string is not one), not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text
