"""hypercorn and gunicorn pass their access-log atoms with every access line: our handler reads the
request's method, path, query, status, client, user agent and duration from them (hypercorn's
default line has no query string, where attacks are), and nothing else (the atoms also hold every
request header and every environment variable). Driven by the real hypercorn ``AccessLogAtoms``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypercorn.config import Config
from hypercorn.logging import AccessLogAtoms
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_ext.classify.processor import EventClassifierProcessor
from otel_ext.handler import OtelExtLoggingHandler, access_atoms
from otel_ext.telemetry import Counters

SECRET_ENV = "OTEL_EXT_TEST_DB_PASSWORD"
SECRET = "hunter2-not-for-logs"


@pytest.fixture
def hypercorn_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, InMemoryLogRecordExporter]]:
    monkeypatch.setenv(SECRET_ENV, SECRET)  # hypercorn copies every environment variable into the atoms
    provider = LoggerProvider()
    provider.add_log_record_processor(EventClassifierProcessor(counters=Counters("atoms")))
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = OtelExtLoggingHandler(logger_provider=provider)
    log = logging.getLogger("hypercorn.access")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log, exporter
    log.removeHandler(handler)
    log.propagate = True
    provider.shutdown()


def _atoms(path: str, query: bytes, status: int, ua: str = "Mozilla/5.0") -> AccessLogAtoms:
    scope: Any = {"type": "http", "http_version": "1.1", "client": ("10.0.0.7", 51234), "method": "GET",
                  "path": path, "query_string": query, "scheme": "https",
                  "headers": [(b"user-agent", ua.encode()), (b"authorization", f"Bearer {SECRET}".encode())]}
    return AccessLogAtoms(scope, {"status": status, "headers": [(b"content-length", b"12")]}, 0.0125)


@pytest.mark.parametrize(("path", "query", "family"), [
    ("/index.php", b"id=1%27%20AND%20SLEEP(6)--%20", "sqli"),
    ("/search", b"q=%3CScRiPt%3Ealert(1)%3C/ScRiPt%3E", "xss"),
    ("/download", b"file=../../../../etc/passwd%00.png", "path_traversal"),
    ("/a", b"name=%24%7Bjndi%3Aldap%3A%2F%2Fx.example%2Fa%7D", "template"),
])
def test_an_attack_in_the_query_of_a_hypercorn_line_is_labelled_security(
        hypercorn_log: Any, path: str, query: bytes, family: str) -> None:
    log, exporter = hypercorn_log
    log.info(Config.access_log_format, _atoms(path, query, 200))
    [item] = exporter.get_finished_logs()
    body = str(item.log_record.body)
    assert query.decode() not in body  # hypercorn's default line really lacks the query
    attrs = dict(item.log_record.attributes or {})
    assert attrs["url.query"] == query.decode() and attrs["url.path"] == path
    assert attrs["labels.event_class"] == "security", attrs
    assert attrs["event.action"].startswith("malicious_")
    assert attrs["client.address"] == "10.0.0.7"
    assert attrs["http.response.status_code"] == 200 and attrs["http.request.method"] == "GET"
    assert attrs["http.server.request.duration"] == pytest.approx(0.0125)


def test_a_plain_hypercorn_line_is_access_and_no_header_or_environment_atom_leaks(hypercorn_log: Any) -> None:
    log, exporter = hypercorn_log
    log.info(Config.access_log_format, _atoms("/api/items", b"page=2", 200))
    [item] = exporter.get_finished_logs()
    attrs = dict(item.log_record.attributes or {})
    assert attrs["labels.event_class"] == "access" and attrs["url.query"] == "page=2"
    assert SECRET not in str(attrs) and SECRET not in str(item.log_record.body)
    assert not [k for k in attrs if k.startswith("{") or len(k) <= 2]


def test_attributes_the_record_carries_win_and_odd_atoms_are_ignored() -> None:
    attributes: dict[str, Any] = {"url.path": "/from/the/app", "http.response.status_code": 404}
    access_atoms("gunicorn.access", {"U": "/atom/path", "q": "-", "s": "200", "h": "2001:db8::1", "m": 7,
                                     "D": "12", "a": ""}, attributes)
    assert attributes == {"url.path": "/from/the/app", "http.response.status_code": 404,
                          "client.address": "2001:db8::1"}

    class Hostile(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Any:
            raise RuntimeError("no")

    attributes = {}
    access_atoms("hypercorn.access", Hostile(h="10.0.0.9:4000", q="x=1"), attributes)  # dict.get: never its get
    assert attributes == {"client.address": "10.0.0.9", "url.query": "x=1"}
