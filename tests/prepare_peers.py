"""Prepare the real peers the tests start (idempotent, cached under the git-ignored .peers/):
build the OpenTelemetry Collector from collector_configs/builder-config.yaml (Go module proxy) and
fetch the Elasticsearch / OpenSearch integ-test distributions (Maven Central) and the official
elasticsearch client 8.x (pip, beside the venv's 9.x), the Apache Kafka jars (Maven Central, under
.peers/) and SeaweedFS (built from the Go module proxy, cached outside the clone under
~/.cache/otel-ext-peers/; the S3 tests fall back to moto if it cannot be built); install Debian's chromium for the report
tests when /usr/bin/chromium is missing (apt-get). rotel comes with pip."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import ensure_chromium
from collector import ensure_collector
from kafka_server import ensure_kafka
from search_server import EXTRA_VERSIONS, FLAVOURS, ensure_distribution, ensure_es_client_8

if __name__ == "__main__":
    t0 = time.monotonic()
    print(f"collector: {ensure_collector()}", flush=True)
    for flavour in FLAVOURS:
        print(f"{flavour}: {ensure_distribution(flavour)}", flush=True)
        for version in EXTRA_VERSIONS.get(flavour, ()):
            print(f"{flavour} {version}: {ensure_distribution(flavour, version)}", flush=True)
    print(f"elasticsearch client 8.x: {ensure_es_client_8()}", flush=True)
    print(f"kafka: {ensure_kafka()}", flush=True)
    try:
        from s3_server import ensure_seaweedfs

        print(f"seaweedfs: {ensure_seaweedfs()}", flush=True)
    except (OSError, subprocess.SubprocessError) as exc:  # the S3 tests then use moto, and say so
        print(f"seaweedfs: NOT BUILT ({exc}); S3 tests will fall back to moto", flush=True)
    print(f"chromium: {ensure_chromium()}", flush=True)
    print(f"peers ready in {time.monotonic() - t0:.0f} s", flush=True)
