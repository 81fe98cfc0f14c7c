"""Redaction reaches every part of a record that leaves the process: the body and attributes (as
before), the event name, and the attributes of the record's resource and instrumentation scope.

A secret in ``OTEL_RESOURCE_ATTRIBUTES`` (a connection string pasted into a deployment manifest), in
a scope's attributes or in an event name used to reach the queue, the spill file and the backend in
clear: the review's strict xfail in tests/test_review_firsthop.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from peers import wait_until

from otel_ext.redact import RedactionProcessor

SECRET = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


def _item(resource: Resource, scope: InstrumentationScope | None, event_name: str | None = None,
          readable: bool = False) -> Any:
    record = LogRecord(body="ok", severity_number=SeverityNumber.INFO, event_name=event_name,
                       attributes={"http.route": "/x"})
    cls = ReadableLogRecord if readable else ReadWriteLogRecord
    return cls(record, resource=resource, instrumentation_scope=scope)


def test_event_name_resource_and_scope_secrets_are_redacted_once_per_object() -> None:
    redaction = RedactionProcessor()
    resource = Resource({"service.name": "shop", "db.password": SECRET, "url.full": f"https://x/?api_key={SECRET}"})
    scope = InstrumentationScope("shop.api", "1.0", None, {"api_key": SECRET, "team": "payments"})
    items = [_item(resource, scope, f"login.failed token={SECRET}") for _ in range(50)]
    for item in items:
        redaction.on_emit(item)
    first = items[0]
    assert SECRET not in str(first.log_record.event_name) and first.log_record.event_name.startswith("login.failed")
    assert SECRET not in str(dict(first.resource.attributes))
    assert first.resource.attributes["service.name"] == "shop"  # what is not secret stays
    assert SECRET not in str(dict(first.instrumentation_scope.attributes))
    assert first.instrumentation_scope.attributes["team"] == "payments"
    assert (first.instrumentation_scope.name, first.instrumentation_scope.version) == ("shop.api", "1.0")
    # one redacted copy per distinct object, shared by every record (the exporter groups by it)
    assert {id(i.resource) for i in items} == {id(first.resource)}
    assert {id(i.instrumentation_scope) for i in items} == {id(first.instrumentation_scope)}
    assert resource.attributes["db.password"] == SECRET  # the app's own objects are not changed


def test_clean_resources_and_scopes_stay_the_same_objects() -> None:
    redaction = RedactionProcessor()
    resource = Resource({"service.name": "shop", "deployment.environment": "prod"})
    scope = InstrumentationScope("shop.api", "1.0", None, {"team": "payments"})
    item = _item(resource, scope, "order.placed")
    redaction.on_emit(item)
    assert item.resource is resource and item.instrumentation_scope is scope
    assert item.log_record.event_name == "order.placed"
    again = _item(item.resource, item.instrumentation_scope)
    redaction.on_emit(again)  # idempotent
    assert again.resource is resource


def test_the_sdks_frozen_records_are_redacted_too() -> None:
    """Exporters receive ``ReadableLogRecord`` (a frozen dataclass): the deferred stage redacts there."""
    redaction = RedactionProcessor()
    item = _item(Resource({"db.password": SECRET}), InstrumentationScope("s", None, None, {"token": SECRET}),
                 readable=True)
    redaction.redact_item(item)
    assert SECRET not in str(dict(item.resource.attributes))
    assert SECRET not in str(dict(item.instrumentation_scope.attributes))


class _Hostile(Resource):
    @property
    def attributes(self) -> Any:  # type: ignore[override]
        raise RuntimeError("boom")


def test_a_resource_that_cannot_be_read_is_withheld_never_raised() -> None:
    redaction = RedactionProcessor()
    item = _item(_Hostile({"db.password": SECRET}), None)
    redaction.on_emit(item)  # must not raise into the app
    assert dict(item.resource.attributes) == {"otel_ext.redaction": "failed"}
    assert redaction.redactor.counters.get("failed") >= 1


APP = textwrap.dedent(
    """
    import otel_ext
    from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider
    pipe = otel_ext.configure()
    logger = get_logger_provider().get_logger("shop.api", "1.0", attributes={"api_key": "SECRET"})
    for i in range(300):
        logger.emit(LogRecord(body=f"login {i}", severity_number=SeverityNumber.WARN,
                              event_name="auth.failure token=SECRET",
                              attributes={"http.route": "/login", "seq": i}))
    pipe.force_flush()
    pipe.shutdown()
    print("APP-DONE", flush=True)
    """
)


@pytest.mark.peers
@pytest.mark.parametrize("buffer", ["2048", "16"])
def test_configure_to_a_real_receiver_no_secret_from_resource_scope_or_event_name(
        receivers: Any, tmp_path: Path, buffer: str) -> None:
    """The whole pipeline (``configure()``, deferred processing, first hop, queue) to a real rotel; a
    16-record buffer makes the first hop spill (sealed frames, then the worker's plain ones)."""
    rx = receivers("reach")
    queue = tmp_path / "queue"
    (tmp_path / "app.py").write_text(APP.replace("SECRET", SECRET))
    env = {**os.environ, "OTEL_EXT_BACKENDS": rx.grpc_url, "OTEL_EXT_QUEUE_DIR": str(queue),
           "OTEL_EXT_BUFFER_SIZE": buffer, "OTEL_SERVICE_NAME": "reach",
           "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment=prod,db.password={SECRET}",
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(tmp_path / "app.py")], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "APP-DONE" in proc.stdout, proc.stderr[-3000:]
    assert wait_until(lambda: rx.output().count("LogRecord #") >= 300, 20), rx.output()[-2000:]
    out = rx.output()
    assert SECRET not in out
    assert "reach" in out and "deployment.environment" in out and "REDACTED" in out
    on_disk = b"".join(p.read_bytes() for p in queue.rglob("*") if p.is_file())
    assert SECRET.encode() not in on_disk
    assert SECRET not in proc.stderr
