"""The real OpenTelemetry Collector for tests, built with the OpenTelemetry Collector Builder from
``collector_configs/builder-config.yaml`` (Go module proxy), cached under the git-ignored ``.peers/``
keyed by the manifest's hash. First build: a couple of minutes on 2 cores."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "collector_configs" / "builder-config.yaml"
PEERS = ROOT / ".peers"
BUILDER = "go.opentelemetry.io/collector/cmd/builder@v0.145.0"


def ensure_collector() -> Path:
    digest = hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]
    workdir = PEERS / f"otelcol-{digest}"
    binary = workdir / "build" / "otelcol-otel-ext" / "otelcol-otel-ext"
    if binary.exists():
        return binary
    (workdir / "build").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPATH": str(PEERS / "gopath"), "GOFLAGS": "-modcacherw",
           # the module proxy's checksum database has no entry for some contrib module versions
           "GONOSUMDB": "github.com/open-telemetry/opentelemetry-collector-contrib"}
    subprocess.run(["go", "install", BUILDER], env=env, check=True, timeout=900)
    subprocess.run([str(PEERS / "gopath" / "bin" / "builder"), "--config", str(MANIFEST)], cwd=workdir, env=env,
                   check=True, timeout=1800)
    return binary


if __name__ == "__main__":
    print(ensure_collector())
