"""The real OpenTelemetry Collector for tests, built with the OpenTelemetry Collector Builder from
``collector_configs/builder-config.yaml`` (Go module proxy), cached outside the clone under
``~/.cache/otel-ext-peers/`` keyed by the manifest's hash. First build: a few minutes on 2 cores."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "collector_configs" / "builder-config.yaml"
BUILDER = "go.opentelemetry.io/collector/cmd/builder@v0.145.0"


def peers_cache() -> Path:
    """Builds shared by every clone on this machine (never committed): ``$OTEL_EXT_PEERS_CACHE``, else
    ``$XDG_CACHE_HOME/otel-ext-peers`` (``~/.cache/otel-ext-peers``)."""
    if os.environ.get("OTEL_EXT_PEERS_CACHE"):
        return Path(os.environ["OTEL_EXT_PEERS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-ext-peers"


def go_cache() -> Path:
    """Go's module cache lives outside the clone (~600 MB that every clone would download again)."""
    return peers_cache() / "go"


def ensure_collector() -> Path:
    digest = hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]
    # keyed by the manifest's hash and kept outside the clone: a second clone (or CI) reuses the build
    workdir = peers_cache() / f"otelcol-{digest}"
    binary = workdir / "build" / "otelcol-otel-ext" / "otelcol-otel-ext"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise RuntimeError("Go not found: the test collector is built with the OpenTelemetry Collector Builder "
                           "from the Go module proxy - install Go 1.24+ (e.g. Debian's golang-go or go.dev's tarball)")
    (workdir / "build").mkdir(parents=True, exist_ok=True)
    gopath = go_cache()
    env = {**os.environ, "GOPATH": str(gopath), "GOBIN": str(peers_cache() / "bin"), "GOFLAGS": "-modcacherw",
           # the module proxy's checksum database has no entry for some contrib module versions
           "GONOSUMDB": "github.com/open-telemetry/opentelemetry-collector-contrib"}
    print(f"building the test collector (first time: ~2-5 min, ~600 MB of Go modules in {gopath})", flush=True)
    for command, timeout in (
        (["go", "install", BUILDER], 900),
        ([str(peers_cache() / "bin" / "builder"), "--config", str(MANIFEST)], 1800),
    ):
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:  # the tools' own output only when they fail
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return binary


if __name__ == "__main__":
    print(ensure_collector())
