"""Running the example service (or any ASGI/WSGI app) as a real subprocess under
``opentelemetry-instrument``, on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import urllib3
from peers import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Service:
    def __init__(self, command: list[str], env: dict[str, str], workdir: Path, instrument: bool = True) -> None:
        self.port = free_port()
        self.log = workdir / f"service-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "XDG_STATE"))}
        full_env.update(env)
        full_env["PYTHONPATH"] = str(ROOT)
        cmd = [c.replace("{port}", str(self.port)) for c in command]
        if instrument:
            cmd = [str(BIN / "opentelemetry-instrument"), *cmd]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        if not wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, timeout):
            raise RuntimeError(f"service did not start:\n{self.output()}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def post_json(self, path: str) -> dict:  # type: ignore[type-arg]
        import json

        resp = urllib3.PoolManager().request("POST", self.url + path, timeout=60)
        return json.loads(resp.data) if resp.status == 200 else {"status": resp.status}

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return int(self.proc.returncode or 0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def uvicorn(app: str = "examples.api_service.app:app", *extra: str) -> list[str]:
    return [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", "{port}", "--no-access-log", *extra]
