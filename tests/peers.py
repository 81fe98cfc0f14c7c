"""Real peer processes for tests: rotel OTLP receivers on free loopback ports.

A receiver prints every record it accepts (``--debug-log logs --debug-log-verbosity detailed``)
into its own file; :meth:`Rotel.uids` reads the ``log.record.uid`` of every accepted record, so
tests count deliveries and duplicates on the wire. Receivers are killed by PID (SIGKILL or
SIGTERM) and can be restarted on the same ports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rotel_binary() -> str:
    """The ``rotel-agent`` binary bundled in the ``rotel`` wheel (imported lazily, so that
    ``pytest -m "not peers"`` collects and runs on a machine without rotel)."""
    import rotel

    return str(Path(rotel.__file__).resolve().parent / "rotel-agent")
_UID = re.compile(r"-> log\.record\.uid: Str\(([^)\n]+)\)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Rotel:
    """One rotel receiver (gRPC + HTTP) on 127.0.0.1."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self._outputs: list[Path] = []

    @property
    def grpc_url(self) -> str:
        return f"otlp+grpc://127.0.0.1:{self.grpc_port}?name={self.name}-grpc"

    @property
    def http_url(self) -> str:
        return f"otlp+http://127.0.0.1:{self.http_port}?name={self.name}-http"

    def start(self) -> Rotel:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.generation += 1
        out = self.workdir / f"{self.name}-{self.generation}.out"
        self._outputs.append(out)
        self.proc = subprocess.Popen(
            [rotel_binary(), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
             "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}", "--exporter", "blackhole",
             "--debug-log", "logs", "--debug-log", "traces", "--debug-log-verbosity", "detailed",
             "--logs-batch-timeout", "20ms", "--traces-batch-timeout", "20ms",
             "--pid-file", str(self.workdir / f"{self.name}.pid"), "--log-file", str(self.workdir / f"{self.name}.log")],
            stdout=out.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        if not wait_until(lambda: port_open(self.grpc_port) and port_open(self.http_port), 15):
            raise RuntimeError(f"rotel {self.name} did not open its ports")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def uids(self) -> list[str]:
        """Every record uid this receiver accepted, across restarts (duplicates kept)."""
        found: list[str] = []
        for out in self._outputs:
            if out.exists():
                found.extend(_UID.findall(out.read_text(errors="replace")))
        return found

    def count(self) -> int:
        return len(self.uids())

    def output(self) -> str:
        return "".join(out.read_text(errors="replace") for out in self._outputs if out.exists())

    def records(self) -> list[dict[str, str]]:
        """Every accepted record's attributes (values as printed: strings unquoted, ints as digits)."""
        out = []
        for chunk in self.output().split("LogRecord #")[1:]:
            attrs = dict(re.findall(r"-> ([\w.@-]+): (?:Str|Int|Double|Bool)\((.*?)\)\n", chunk))
            out.append(attrs)
        return out

    def attribute_values(self, key: str) -> list[str]:
        """String values of attribute ``key`` over every accepted record."""
        return re.findall(rf"-> {re.escape(key)}: Str\((.*?)\)\n", self.output())

    def settled_uids(self, expected: int, timeout: float = 15.0) -> list[str]:
        """The accepted uids once at least ``expected`` unique ones were printed and the count has
        stopped moving (rotel acknowledges before its 20 ms batch is printed)."""
        wait_until(lambda: len(set(self.uids())) >= expected, timeout)
        last = -1
        while True:
            uids = self.uids()
            if len(uids) == last:
                return uids
            last = len(uids)
            time.sleep(0.15)


def collect(expected: int, *receivers: Rotel, timeout: float = 15.0) -> list[str]:
    """Every uid accepted by ``receivers`` once ``expected`` unique ones arrived and counts settled."""
    wait_until(lambda: len({u for r in receivers for u in r.uids()}) >= expected, timeout)
    last = -1
    while True:
        uids = [u for r in receivers for u in r.uids()]
        if len(uids) == last:
            return uids
        last = len(uids)
        time.sleep(0.15)


def kill_process(proc: subprocess.Popen[Any] | None) -> None:
    """kill -9 a peer process that may already be gone, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(30)


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 30.0) -> None:
    """SIGTERM a peer process, SIGKILL it if it has not exited after ``grace`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
