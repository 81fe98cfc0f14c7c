"""Report building blocks without peers: the streaming aggregator re-buckets exactly as the span
grows (same epoch-aligned buckets as a one-shot count at the final interval), damaged OTLP/JSON
lines are skipped and counted, tiers cover every client once, an unreachable search backend is
exit code 3 without a traceback, control characters never reach the terminal."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from peers import free_port

from otel_ext.cli import clean
from otel_ext.report.model import ANONYMOUS, Aggregator, pick_interval, suggest_tiers
from otel_ext.report.records import OTLPJsonFileReader, Record


def make_records(n: int, span_s: float, seed: int = 3) -> list[Record]:
    rnd = random.Random(seed)
    base = 1_795_000_000 * 10**9
    out = []
    for _ in range(n):
        t = base + int(rnd.random() * span_s * 1e9)
        out.append(Record(t, 9, "req", {"http.request.method": "GET", "http.response.status_code": rnd.choice([200, 404, 503]),
                                        "http.route": rnd.choice(["/a", "/b", None]), "tenant.id": rnd.choice(["x", "y", "z", ""]),
                                        "http.server.request.duration": rnd.random()}))
    return out


def test_streaming_buckets_equal_a_one_shot_count_at_the_final_interval() -> None:
    for span in (30, 3 * 3600, 20 * 86400):
        records = make_records(3000, span)
        data = Aggregator("tenant.id").build(records)  # time order is random: buckets coarsen as it grows
        first = min(r.time_ns for r in records) // 1_000_000
        last = max(r.time_ns for r in records) // 1_000_000
        interval = pick_interval((last - first) / 1000)
        assert data.interval_s == interval
        step = interval * 1000
        want_timeline: Counter[int] = Counter()
        want_errors: Counter[int] = Counter()
        want_clients: Counter[tuple[str, int]] = Counter()
        for r in records:
            bucket = r.time_ns // 1_000_000 // step * step
            want_timeline[bucket] += 1
            want_errors[bucket] += r.get("http.response.status_code") >= 500
            want_clients[r.get("tenant.id") or ANONYMOUS, bucket] += 1
        assert data.timeline == {b: (want_timeline[b], want_errors[b]) for b in sorted(want_timeline)}
        assert {(c, b): n for c, t in data.usage_timeline.items() for b, n in t.items()} == dict(want_clients)
        assert len(data.timeline) <= 60


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    good = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "1795000000000000000", "attributes": [
        {"key": "http.request.method", "value": {"stringValue": "GET"}},
        {"key": "http.response.status_code", "value": {"intValue": "200"}}]}]}]}]}
    lines = [json.dumps(good), "{broken", json.dumps({"resourceLogs": "nope"}), json.dumps([1, 2]),
             json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}),
             json.dumps(good)]
    (tmp_path / "logs.jsonl").write_text("\n".join(lines) + "\n")
    reader = OTLPJsonFileReader(tmp_path)
    records = list(reader.records())
    assert len(records) == 2 and reader.bad_lines == 4
    assert records[0].get("http.response.status_code") == 200


def test_tiers_hold_every_client_once() -> None:
    monthly = {f"c{i}": float(i * i) for i in range(1, 21)}
    tiers = suggest_tiers(monthly)
    assert [t.name for t in tiers] == ["Starter", "Growth", "Enterprise"]
    assert sorted(c for t in tiers for c in t.clients) == sorted(monthly)
    assert tiers[0].high == tiers[1].low and tiers[1].high == tiers[2].low
    assert all(monthly[c] > tiers[2].low for c in tiers[2].clients)
    assert suggest_tiers({}) == []


def test_report_from_an_unreachable_search_backend_is_exit_3(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "otel_ext.cli", "report", "--backend",
                          f"elasticsearch+http://127.0.0.1:{free_port()}?timeout=1s", "--out", str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "otel-ext: error:" in out.stderr
    assert not (tmp_path / "r.html").exists()


def test_control_characters_never_reach_the_terminal() -> None:
    assert clean("bad\x1b[2J\x1b]0;owned\x07 line\nrow\x9b") == "bad?[2J?]0;owned? line?row?"
