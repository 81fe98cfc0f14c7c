"""Main job (for now): log a realistic burst of API events through otel-ext's processors and print
what each was labelled.

    python examples/label_events.py [--rules examples/rules.yaml]
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Sequence

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor

from otel_ext import EventClassifierProcessor, RedactionProcessor


class PrintLabels(LogRecordExporter):
    def __init__(self) -> None:
        self.classes: Counter[str] = Counter()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for item in batch:
            rec = item.log_record
            attrs = dict(rec.attributes or {})
            self.classes[str(attrs.get("labels.event_class"))] += 1
            print(
                f"{rec.severity_text or '-':5} {attrs.get('labels.event_class', '?'):11} "
                f"{attrs.get('event.action', '-'):27} {','.join(attrs.get('tags', ())):27} {str(rec.body)[:60]}"
            )
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", help="a YAML rule file (see examples/rules.yaml)")
    args = parser.parse_args(argv)

    provider = LoggerProvider()
    printer = PrintLabels()
    provider.add_log_record_processor(EventClassifierProcessor(rules_file=args.rules))
    provider.add_log_record_processor(RedactionProcessor())
    provider.add_log_record_processor(SimpleLogRecordProcessor(printer))
    handler = LoggingHandler(logger_provider=provider)
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # a formatter is set: bodies get a prefix

    api = logging.getLogger("shop.api")
    access = logging.getLogger("uvicorn.access")

    def req(status: int, route: str, method: str = "GET", **extra: object) -> None:
        api.info("%s %s -> %d", method, route, status, extra={
            "http.request.method": method, "http.route": route, "http.response.status_code": status,
            "client.address": "203.0.113.7", "user.id": "alice", **extra})

    print(f"{'SEV':5} {'CLASS':11} {'event.action':27} {'tags':27} body")
    req(200, "/api/orders")
    req(200, "/api/login", "POST")
    for _ in range(3):
        req(401, "/api/login", "POST")
    req(403, "/api/admin/users")
    req(429, "/api/orders")
    req(422, "/api/orders", "POST")
    req(500, "/api/cart", "POST")
    req(200, "/api/reports/{id}", **{"http.server.request.duration": 2.4})
    access.info('%s - "%s %s HTTP/%s" %d', "198.51.100.4:53122", "GET", "/api/items?page=2", "1.1", 200)
    access.info('%s - "%s %s HTTP/%s" %d', "198.51.100.4:53123", "POST", "/api/login", "1.1", 401)
    api.warning("Failed login for bob: invalid password (password=hunter2)")
    api.info("user created", extra={"event.action": "user_created:bob"})
    try:
        raise TimeoutError("payment provider timed out")
    except TimeoutError:
        api.exception("charge failed")
    api.info("cache warmed in 12 ms")
    provider.shutdown()
    print("\nper class:", dict(sorted(printer.classes.items())))


if __name__ == "__main__":
    main()
