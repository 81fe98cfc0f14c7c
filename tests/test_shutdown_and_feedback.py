"""Shutdown keeps its bound and makes durable what the final flush produces; our own logs and the
client logs of our delivery threads never come back into the pipeline."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber

import otel_ext
from otel_ext.export import FailoverLogExporter
from otel_ext.export.testing import MemoryBackend
from otel_ext.selflog import RateLimitedStderrHandler, own_records_filter, suppressed
from otel_ext.telemetry import Counters


@pytest.fixture
def pipeline_cleanup() -> Iterator[list[otel_ext.Pipeline]]:
    made: list[otel_ext.Pipeline] = []
    yield made
    for p in made:
        p.shutdown()


def records_in(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [r for line in path.read_text().splitlines() for rl in json.loads(line)["resourceLogs"]
            for sl in rl["scopeLogs"] for r in sl["logRecords"]]


def test_alert_computed_during_the_final_flush_is_delivered(tmp_path: Path,
                                                           pipeline_cleanup: list[otel_ext.Pipeline]) -> None:
    """25 failed logins, then shutdown at once: the brute-force alert used to be computed and lost."""
    pipeline = otel_ext.configure(backends=f"file://{tmp_path / 'out'}", queue_dir=str(tmp_path / "q"))
    pipeline_cleanup.append(pipeline)
    logger = pipeline.provider.get_logger("auth")
    for i in range(25):
        logger.emit(body="login failed", severity_number=SeverityNumber.WARN, attributes={
            "labels.event_class": "security", "event.action": "authn_login_fail", "user.id": "alice",
            "client.address": f"10.0.0.{i}", "http.response.status_code": 401})
    pipeline.shutdown()
    out = records_in(tmp_path / "out" / "logs.jsonl")
    actions = [a["value"].get("stringValue") for r in out for a in r.get("attributes", [])  # type: ignore[union-attr, attr-defined]
               if a["key"] == "event.action"]  # type: ignore[index]
    assert actions.count("authn_login_fail") == 25
    assert actions.count("authn_login_fail_max") == 1


def test_shutdown_honours_its_bound_with_a_backend_that_never_answers(tmp_path: Path) -> None:
    in_flight = threading.Event()
    stuck = MemoryBackend("stuck", delay=30.0, hook=lambda payload, records: in_flight.set())  # never answers
    exp = FailoverLogExporter([stuck], queue_dir=tmp_path / "q", shutdown_timeout=1.0, counters=Counters("e"),
                              queue_counters=Counters("q"))
    from durable_helpers import entry

    exp.queue.append([entry([1, 2, 3])])
    exp.lanes[0].wake.set()
    assert in_flight.wait(10)
    start = time.monotonic()
    exp.shutdown()
    took = time.monotonic() - start
    assert took < 1.0 + 0.5, f"shutdown took {took:.2f} s for a 1 s bound"
    assert list((tmp_path / "q").glob("q-*.db")), "the undelivered records must stay on disk"


def test_suppressed_and_own_records_are_filtered_from_capture() -> None:
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, "POST /v1/logs", None, None)
    assert own_records_filter(record)
    with suppressed():
        assert not own_records_filter(record)  # emitted by one of our threads
    ours = logging.LogRecord("otel_ext.export.sender", logging.ERROR, __file__, 1, "lane error", None, None)
    assert not own_records_filter(ours)


def test_our_stderr_handler_says_a_repeated_line_once_per_interval(capsys: pytest.CaptureFixture[str]) -> None:
    handler = RateLimitedStderrHandler(interval=0.3, burst=1)
    logger = logging.getLogger("otel_ext.test_rate")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(500):
            logger.error("otel-ext: could not adopt %s", "q-1.db")
        time.sleep(0.35)
        logger.error("otel-ext: could not adopt %s", "q-1.db")
    finally:
        logger.removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "499 similar line(s) held back" in lines[1]


def test_idle_pipeline_with_root_at_debug_does_not_feed_itself(tmp_path: Path,
                                                              pipeline_cleanup: list[otel_ext.Pipeline]) -> None:
    """Root logger at DEBUG (more than the README's INFO): after one app record, our own error
    lines and the client lines of our delivery threads are not shipped back through the pipeline."""
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        pipeline = otel_ext.configure(backends=f"file://{tmp_path / 'out'}", queue_dir=str(tmp_path / "q"))
        pipeline_cleanup.append(pipeline)
        exporter = pipeline.exporters[0]
        logging.getLogger("app").warning("one app record")
        assert pipeline.force_flush(10_000)
        first = len(records_in(tmp_path / "out" / "logs.jsonl"))
        with suppressed():  # what a delivery thread's client would log
            logging.getLogger("urllib3.connectionpool").debug("http://127.0.0.1:9 \"POST /v1/logs\" 200")
        logging.getLogger("otel_ext.export.sender").error("otel-ext: a lane error")
        time.sleep(2.0)
        assert pipeline.force_flush(10_000)
        assert first == 1 and len(records_in(tmp_path / "out" / "logs.jsonl")) == first
        assert exporter.stats()["counters"]["delivered"][exporter.backends[0].name] == 1
    finally:
        root.setLevel(old_level)


@pytest.mark.peers
def test_root_at_info_with_elasticsearch_idle_10_s_does_not_grow(es_server: Any, tmp_path: Path,
                                                                pipeline_cleanup: list[otel_ext.Pipeline]) -> None:
    """Issue 12: one app record, then idle, produced 98 documents in 10 s (the client's INFO lines
    about our own bulk requests were captured and shipped, which made more requests...)."""
    import urllib3

    http = urllib3.PoolManager(retries=False)

    def count() -> int:
        http.request("POST", f"{es_server.url}/logs-*-feedback/_refresh?expand_wildcards=all&ignore_unavailable=true")
        resp = http.request("GET", f"{es_server.url}/logs-*-feedback/_count?expand_wildcards=all&ignore_unavailable=true")
        return int(json.loads(resp.data).get("count", 0))

    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)  # as the README asks users to
    try:
        pipeline = otel_ext.configure(backends=f"elasticsearch+http://127.0.0.1:{es_server.port}?namespace=feedback",
                                      queue_dir=str(tmp_path / "q"))
        pipeline_cleanup.append(pipeline)
        logging.getLogger("app").warning("one app record")
        assert pipeline.force_flush(30_000)
        deadline = time.monotonic() + 30
        while count() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        first = count()
        time.sleep(10)
        assert pipeline.force_flush(30_000)
        assert first == 1 and count() == first
    finally:
        root.setLevel(old_level)
