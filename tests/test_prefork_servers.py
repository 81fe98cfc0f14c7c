"""Prefork servers under opentelemetry-instrument: gunicorn (sync and uvicorn workers) and
uvicorn --workers deliver every record from every worker to a real receiver (fork-safe queues)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from peers import collect
from service import BIN, Service, uvicorn

pytestmark = pytest.mark.peers
REQUESTS = 300


def hammer(url: str, path: str = "/api/orders") -> Counter[int]:
    http = urllib3.PoolManager(retries=False, maxsize=8)

    def one(i: int) -> int:
        # a fresh connection per request spreads requests over the workers
        return http.request("GET", url + path, headers={"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}",
                                                         "X-Seq": str(i), "Connection": "close"}, timeout=10).status

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(one, range(REQUESTS)))


def env(tmp_path: Path, rx: Any) -> dict[str, str]:
    return {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": rx.grpc_url,
            "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"), "OTEL_SERVICE_NAME": "prefork",
            "OTEL_EXT_DETECTORS": "off"}  # exact per-request counts; alerts are tested elsewhere


def pids_seen(rx: Any) -> set[str]:
    import re

    return set(re.findall(r"-> worker\.pid: Int\((\d+)\)", rx.output()))


@pytest.mark.parametrize("kind", ["gunicorn-sync", "gunicorn-uvicorn", "uvicorn-workers"])
def test_every_worker_delivers_every_record(receivers: Any, tmp_path: Path, kind: str) -> None:
    rx = receivers("rx")
    if kind == "gunicorn-sync":
        command = [str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}", "wsgi_app:app",
                   "--chdir", str(Path(__file__).parent)]
        path, per_request = "/hello", 1
    elif kind == "gunicorn-uvicorn":
        command = [str(BIN / "gunicorn"), "-w", "2", "-k", "uvicorn_worker.UvicornWorker", "-b", "127.0.0.1:{port}",
                   "examples.api_service.app:app"]
        path, per_request = "/api/orders/7/fail", 2  # an exception record and an access record
    else:
        command = uvicorn("examples.api_service.app:app", "--workers", "2")
        path, per_request = "/api/orders/7/fail", 2
    service = Service(command, env(tmp_path, rx), tmp_path)
    try:
        service.wait_ready(60)
        statuses = hammer(service.url, path)
    finally:
        code = service.stop(60)  # graceful: each worker flushes its pipeline on exit
    assert code in (0, -15), service.output()
    assert sum(statuses.values()) == REQUESTS
    expected = REQUESTS * per_request
    uids = collect(expected, rx, timeout=30)
    assert len(set(uids)) == expected, service.output()[-3000:]
    if kind == "gunicorn-sync":
        assert len(pids_seen(rx)) == 2  # both workers served and delivered


def test_sigterm_right_after_a_burst_loses_nothing(receivers: Any, tmp_path: Path) -> None:
    """uvicorn ends a graceful shutdown by re-raising SIGTERM with the default action: without the
    flush-on-termination handler the records still in the SDK's memory buffer would die with it."""
    rx = receivers("rx")
    # keep records in the SDK's memory buffer for 5 s: only the flush on SIGTERM can save them
    slow = {**env(tmp_path, rx), "OTEL_BLRP_SCHEDULE_DELAY": "5000"}
    service = Service(uvicorn("examples.api_service.app:app"), slow, tmp_path)
    try:
        service.wait_ready(60)
        statuses = hammer(service.url, "/api/orders/7/fail")
    finally:
        code = service.stop(60)
    assert code == -15, service.output()  # died by the re-raised signal, as uvicorn does
    assert statuses == {500: REQUESTS}
    assert len(set(collect(2 * REQUESTS, rx, timeout=30))) == 2 * REQUESTS
