"""A real S3-compatible server for tests: SeaweedFS (``weed mini``: master, volume, filer and S3
gateway in one process), built once from the Go module proxy (its go.mod has a ``replace``, so not
``go install``: the module is downloaded, copied and built), cached outside the clone under
``~/.cache/otel-ext-peers/`` (``OTEL_EXT_PEERS_CACHE``): a ~5 min build on 2 cores whose Go build
cache is several GB. Everything binds to 127.0.0.1 on free ports; one access key with Admin rights.

If SeaweedFS cannot be built, ``S3Server`` falls back to ``moto`` in server mode — an emulator, not a
real implementation — and says so (``S3Server.kind``); set ``OTEL_EXT_S3_SERVER=moto`` to force it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from peers import free_port, port_open, wait_until

SEAWEEDFS = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
CACHE = Path(os.environ.get("OTEL_EXT_PEERS_CACHE", Path.home() / ".cache" / "otel-ext-peers"))
ACCESS_KEY, SECRET_KEY = "otelexttest", "otel-ext-test-secret-key"
REGION = "us-east-1"


def ensure_seaweedfs() -> Path:
    """The ``weed`` binary (built and cached on first use)."""
    binary = CACHE / f"seaweedfs-{SEAWEEDFS_VERSION}"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-modcacherw"}
    info = subprocess.run(["go", "mod", "download", "-json", f"{SEAWEEDFS}@{SEAWEEDFS_VERSION}"], env=env,
                          check=True, capture_output=True, text=True, timeout=1200)
    source = CACHE / "src-seaweedfs"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(json.loads(info.stdout)["Dir"], source)
    for path in [source, *source.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    partial = binary.with_suffix(".tmp")
    subprocess.run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "./weed"], cwd=source,
                   env=env, check=True, timeout=3600)
    partial.rename(binary)
    shutil.rmtree(source, ignore_errors=True)
    return binary


class S3Server:
    """SeaweedFS's S3 gateway (or moto) on 127.0.0.1. kill() is kill -9; start() again restarts it
    on the same ports and data directory."""

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind or os.environ.get("OTEL_EXT_S3_SERVER", "seaweedfs")
        self.binary: Path | None = None
        if self.kind == "seaweedfs":
            try:
                self.binary = ensure_seaweedfs()
            except (subprocess.SubprocessError, OSError) as exc:
                print(f"SeaweedFS could not be built ({exc}); falling back to moto (an emulator)", file=sys.stderr)
                self.kind = "moto"
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-s3-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str = "", **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, "region": REGION, **query}.items())
        return f"s3://{bucket}/{prefix}?{q}"

    @staticmethod
    def credentials_env() -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def _command(self) -> list[str]:
        if self.kind == "moto":
            return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        assert self.binary is not None
        config = self.workdir / "s3.json"
        if not config.exists():
            config.write_text(json.dumps({"identities": [{"name": "otel-ext", "credentials": [
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List",
                                                                                 "Tagging"]}]}))
            self._ports = {flag: free_port() for flag in (
                "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port")}
        (self.workdir / "data").mkdir(exist_ok=True)
        return [str(self.binary), "mini", f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={config}", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false", "-admin.port.legacy=0",
                "-volume.max=0", *(f"-{flag}={port}" for flag, port in self._ports.items())]

    def start(self) -> S3Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.generation += 1
        log = (self.workdir / f"server-{self.generation}.out").open("wb")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        if not wait_until(lambda: self._ready(), 90, interval=0.2):
            raise RuntimeError(f"{self.kind} S3 did not start:\n{self.output()[-3000:]}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited:\n{self.output()[-3000:]}")
        if not port_open(self.port):
            return False
        try:
            self.client().list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def client(self) -> object:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"},
                                                            retries={"max_attempts": 2},
                                                            request_checksum_calculation="when_required",
                                                            response_checksum_validation="when_required"))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("server-*.out")))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":
    print(ensure_seaweedfs())
