"""The logging handler boundary: whatever the record, the application's log call returns normally,
the record is still exported (with a safe body), our own logs never feed back, and attribute limits
are applied without one stderr line per dropped key."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_ext.handler import (
    MAX_VALUE_DEPTH,
    OtelExtLoggingHandler,
    install_for_instrumentation,
    safe_body,
    safe_text,
    safe_value,
)
from otel_ext.telemetry import Counters

ROOT = Path(__file__).resolve().parents[1]


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("boom in __str__")


class RaisingBoth:
    def __str__(self) -> str:
        raise RuntimeError("boom in __str__")

    def __repr__(self) -> str:
        raise ValueError("boom in __repr__")


class RaisingFormat:
    def __format__(self, spec: str) -> str:
        raise TypeError("boom in __format__")


class Recursive:
    def __str__(self) -> str:
        return str(self)  # RecursionError

    __repr__ = __str__


class Harness:
    def __init__(self) -> None:
        self.provider = LoggerProvider()
        self.exporter = InMemoryLogRecordExporter()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        self.counters = Counters("handler-test")
        self.handler = OtelExtLoggingHandler(logger_provider=self.provider, counters=self.counters)
        self._logger = logging.getLogger("app.handler_test")
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False

    @property
    def logger(self) -> logging.Logger:
        """The app logger with only our handler (pytest's log capture adds its own, which re-raises)."""
        self._logger.handlers[:] = [self.handler]
        return self._logger

    def records(self) -> list[ReadableLogRecord]:
        return list(self.exporter.get_finished_logs())

    def bodies(self) -> list[Any]:
        return [r.log_record.body for r in self.records()]

    def close(self) -> None:
        self._logger.handlers[:] = []
        self.provider.shutdown()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


@pytest.mark.parametrize(
    ("call", "expected_in_body"),
    [
        (lambda log: log.info("%s", RaisingStr()), "RaisingStr"),
        (lambda log: log.info("%s %r", RaisingBoth(), RaisingBoth()), "<unprintable RaisingBoth>"),
        (lambda log: log.info("%r", Recursive()), "<unprintable Recursive>"),
        (lambda log: log.info(RaisingBoth()), "<unprintable RaisingBoth>"),
        (lambda log: log.info("total %d", "not-a-number"), "'not-a-number'"),
        (lambda log: log.info("a %s b %s", 1), "args=(1)"),
        (lambda log: log.info("%(user)s", {"user": RaisingBoth()}), "user=<unprintable RaisingBoth>"),
    ],
    ids=["raising_str", "raising_str_and_repr", "recursion", "raising_msg", "bad_format", "missing_arg",
         "mapping_args"],
)
def test_a_message_that_cannot_be_formatted_returns_normally_and_is_still_exported(
    harness: Harness, call: Any, expected_in_body: str
) -> None:
    call(harness.logger)  # must not raise into the application
    (body,) = harness.bodies()
    assert isinstance(body, str) and expected_in_body in body
    assert harness.counters.get("format_failed", "message") == 1
    assert harness.counters.get("failed") == 0


def test_a_raising_dunder_format_in_a_formatter_returns_normally(harness: Harness) -> None:
    class FormatFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return "{:>10}".format(*record.args)  # type: ignore[misc]

    harness.handler.setFormatter(FormatFormatter())
    harness.logger.info("x %s", RaisingFormat())
    (body,) = harness.bodies()
    assert body.startswith("x %s args=(") and "RaisingFormat" in body


def test_an_exception_whose_message_cannot_be_printed_is_exported_with_its_type(harness: Harness) -> None:
    class Unprintable(Exception):
        pass

    try:
        raise Unprintable(RaisingBoth())
    except Unprintable:
        harness.logger.exception("failed")
    (record,) = harness.records()
    attrs = dict(record.log_record.attributes or {})
    assert record.log_record.body == "failed"
    assert attrs["exception.type"] == "Unprintable"


def test_plain_stdlib_logging_behaviour_is_unchanged_for_good_records(harness: Harness) -> None:
    harness.logger.info("order %s shipped in %.1f s", "ORD-7", 1.25, extra={"tenant": "t1"})
    (record,) = harness.records()
    assert record.log_record.body == "order ORD-7 shipped in 1.2 s"
    assert dict(record.log_record.attributes or {})["tenant"] == "t1"
    assert harness.counters.snapshot() == {}


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    cur = root
    for _ in range(levels):
        cur["a"] = {}
        cur = cur["a"]
    return root


def _self_containing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("value", "check"),
    [
        (RaisingBoth(), lambda v: v == "<unprintable RaisingBoth>"),
        ((1, RaisingBoth()), lambda v: list(v) == [1, "<unprintable RaisingBoth>"]),
        (_self_containing(), lambda v: list(v) == [1, "<cycle>"]),
        (_deep(5000), lambda v: isinstance(v, dict) and "deeper than" in str(v)),
        ({"inner": [RaisingStr(), {"x": RaisingBoth()}]}, lambda v: "inner" in v),
    ],
    ids=["raising_str_and_repr", "tuple_with_unprintable", "cycle", "nested_5000", "nested_unprintable"],
)
def test_an_attribute_value_the_sdk_cannot_take_does_not_cost_the_record(
    harness: Harness, value: Any, check: Any
) -> None:
    harness.logger.warning("order %s", "ORD-9", extra={"bad": value, "tenant": "t1", "http.response.status_code": 500})
    (record,) = harness.records()  # delivered, not dropped
    attrs = dict(record.log_record.attributes or {})
    assert record.log_record.body == "order ORD-9"
    assert attrs["tenant"] == "t1" and attrs["http.response.status_code"] == 500  # the good attributes kept
    assert check(attrs["bad"]), attrs["bad"]
    assert harness.counters.get("failed") == 0
    assert harness.counters.get("format_failed", "attribute_values") == 1


def test_safe_value_output_is_plain_and_bounded() -> None:
    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, (list, tuple)):
            return 1 + max((depth(x) for x in v), default=0)
        assert v is None or type(v) in (str, bool, int, float, bytes), type(v)
        return 0

    assert depth(safe_value(_deep(5000))) <= MAX_VALUE_DEPTH + 1
    assert safe_value(10**400) == str(10**400) and safe_value(-(2**63)) == -(2**63)
    assert safe_value({RaisingBoth(): 1}) == {"<unprintable RaisingBoth>": 1}
    assert safe_value(object()) is None  # as the SDK: no object addresses in the data
    assert safe_value({1, 2}) == "{1, 2}" and safe_value((1, (2, b"x"))) == [1, [2, b"x"]]  # as the SDK cleans them


def test_failure_outside_formatting_is_contained_and_counted(harness: Harness, capsys: Any) -> None:
    class BrokenProvider(LoggerProvider):
        def get_logger(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("provider exploded")

    broken = OtelExtLoggingHandler(logger_provider=BrokenProvider(), counters=harness.counters)
    harness.handler = broken
    for _ in range(50):
        harness.logger.info("hello")
    assert harness.counters.get("failed") == 50
    err = capsys.readouterr().err
    assert err.count("otel-ext: a log record") == 1  # one line, not fifty
    assert "provider exploded" not in err  # no traceback dump


def test_records_of_our_own_logger_tree_and_suppressed_contexts_are_skipped(harness: Harness) -> None:
    own = logging.getLogger("otel_ext.export.sender")
    own.addHandler(harness.handler)
    try:
        own.warning("backend down")
        harness.handler.handle(logging.makeLogRecord({"name": "otel_ext", "msg": "root of our tree"}))
    finally:
        own.removeHandler(harness.handler)
    with suppress_instrumentation():
        harness.logger.warning("logged by a thread that suppresses instrumentation")
    token = context.attach(context.set_value("suppress_instrumentation", True))
    try:
        harness.logger.warning("legacy plain suppression key")
    finally:
        context.detach(token)
    harness.logger.warning("otel_extension.app is not ours")
    assert harness.bodies() == ["otel_extension.app is not ours"]
    assert harness.counters.get("skipped", "own") == 2
    assert harness.counters.get("skipped", "suppressed") == 2


def test_records_logged_on_our_threads_are_skipped_by_the_handler_itself(harness: Harness) -> None:
    """One decision (selflog.own_record_reason) for the handler and the capture filter: a client's
    line logged on one of our threads stays out even where no filter is installed (zero-code)."""
    import threading

    from otel_ext.selflog import own_record_reason, own_records_filter

    assert not harness.handler.filters  # nothing else does the skipping
    worker = threading.Thread(target=lambda: harness.logger.info("POST /_bulk 200"), name="otel-ext-lane-main")
    worker.start()
    worker.join()
    other = threading.Thread(target=lambda: harness.logger.info("app thread line"), name="app-worker")
    other.start()
    other.join()
    assert harness.bodies() == ["app thread line"]
    assert harness.counters.get("skipped", "own_thread") == 1
    record = logging.LogRecord("urllib3", logging.INFO, __file__, 1, "x", None, None)
    record.threadName = "otel-ext-prober"
    assert own_record_reason(record) == "own_thread" and not own_records_filter(record)


def test_a_huge_attribute_dict_is_limited_without_a_line_per_key(tmp_path: Path) -> None:
    # a fresh interpreter: stderr is exactly what the app would see
    script = textwrap.dedent(
        """
        import logging, sys
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from otel_ext.handler import HANDLER_COUNTERS, OtelExtLoggingHandler

        provider = LoggerProvider()
        exporter = InMemoryLogRecordExporter()
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logging.basicConfig(level=logging.INFO)  # the app's own stderr handler on the root logger
        logging.getLogger().addHandler(OtelExtLoggingHandler(logger_provider=provider))
        big = {f"k{i}": i for i in range(100_000)}
        logging.getLogger("app").info("big", extra=big)
        logging.getLogger("app").info("big again", extra=big)
        (first, second) = exporter.get_finished_logs()
        attrs = dict(first.log_record.attributes)
        print("KEPT", len(attrs), "k99999" in attrs, "DROPPED", HANDLER_COUNTERS.get("attributes_dropped"),
              file=sys.stderr)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OTEL_ATTRIBUTE_COUNT_LIMIT": "128"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) <= 5, lines[:10]  # was 99,873 "recursive logging" lines
    kept = next(line for line in lines if line.startswith("KEPT"))
    parts = kept.split()
    assert parts[1] == "128" and parts[2] == "True"  # the SDK's rule: the newest keys survive
    assert int(parts[4]) == 2 * (100_000 + 10 - 128) or int(parts[4]) > 2 * 99_000  # counted, per key
    assert sum("attributes beyond the limit" in line for line in lines) == 1  # one warning per minute


def test_safe_text_never_raises() -> None:
    class NoStr:
        __str__ = None  # type: ignore[assignment]
        __repr__ = None  # type: ignore[assignment]

    assert safe_text(NoStr()) == "<unprintable NoStr>"
    assert safe_text(Recursive()) == "<unprintable Recursive>"
    record = logging.makeLogRecord({"msg": RaisingBoth(), "args": (RaisingStr(),)})
    assert safe_body(record).startswith("<unprintable RaisingBoth> args=(")


def test_the_logging_instrumentation_installs_our_handler() -> None:
    import opentelemetry.instrumentation.logging as instrumentation

    original = instrumentation._setup_logging_handler  # type: ignore[attr-defined]
    assert callable(original), "contrib moved _setup_logging_handler: update otel_ext.handler"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        assert install_for_instrumentation() is original
        provider = LoggerProvider()
        handler = instrumentation._setup_logging_handler(logger_provider=provider)  # type: ignore[attr-defined]
        assert isinstance(handler, OtelExtLoggingHandler) and handler in root.handlers
    finally:
        instrumentation._setup_logging_handler = original  # type: ignore[attr-defined]
        root.handlers[:] = before


APP = textwrap.dedent(
    """
    import logging, os, sys
    {setup}
    class Bad:
        def __str__(self): raise RuntimeError("boom")
        __repr__ = __str__
    log = logging.getLogger("shop.api")
    log.setLevel(logging.INFO)
    log.warning("%s", Bad())
    log.warning("login ok password=hunter2")
    print("APP-CONTINUED", flush=True)
    {teardown}
    """
)


def _delivered(out_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(out_dir.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            for rl in json.loads(line).get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    records.extend(sl.get("logRecords", []))
    return records


def _run_app(tmp_path: Path, code: str, command: list[str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out"
    env = {**os.environ, "OTEL_EXT_BACKENDS": f"file://{out}", "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"),
           "OTEL_SERVICE_NAME": "handler-test", "OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "PYTHONPATH": str(ROOT)}
    (tmp_path / "app.py").write_text(code)
    proc = subprocess.run([*command, sys.executable, str(tmp_path / "app.py")], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    return proc, out


def test_configure_keeps_the_app_running_and_delivers_a_safe_body(tmp_path: Path) -> None:
    code = APP.format(setup="import otel_ext; pipe = otel_ext.configure()",
                      teardown="pipe.force_flush(); print('HANDLER', pipe.stats()['handler']); pipe.shutdown()")
    proc, out = _run_app(tmp_path, code, [])
    assert proc.returncode == 0 and "APP-CONTINUED" in proc.stdout, proc.stderr[-3000:]
    bodies = [r["body"]["stringValue"] for r in _delivered(out)]
    assert any(b.startswith("%s args=(<unprintable Bad>") for b in bodies), bodies
    assert not any("hunter2" in b for b in bodies)
    # counted and visible in stats(); our own one-a-minute warning is not fed back into the pipeline
    # (the otel_ext logger goes to its own rate-limited stderr handler and does not reach root)
    stats_line = next(line for line in proc.stdout.splitlines() if line.startswith("HANDLER "))
    handler_stats = ast.literal_eval(stats_line.removeprefix("HANDLER "))
    assert handler_stats["format_failed"] == {"message": 1}
    assert "a log message could not be formatted" in proc.stderr
    assert not any("could not be formatted" in b for b in bodies)


def test_zero_code_instrumentation_keeps_the_app_running_and_delivers_a_safe_body(tmp_path: Path) -> None:
    code = APP.format(setup="", teardown="import otel_ext; otel_ext.current_pipeline().force_flush()")
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    proc, out = _run_app(tmp_path, code, [instrument])
    assert proc.returncode == 0 and "APP-CONTINUED" in proc.stdout, proc.stderr[-3000:]
    bodies = [r["body"]["stringValue"] for r in _delivered(out)]
    assert any(b.startswith("%s args=(<unprintable Bad>") for b in bodies), bodies
