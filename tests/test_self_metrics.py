"""Self-observability through the OTel metrics API: with a MeterProvider set, otel_ext.* counters
and gauges report classification, delivery and queue state (run in a subprocess: the global
MeterProvider can be set once per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, logging, sys
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from otel_ext import EventClassifierProcessor
    from otel_ext.export import FailoverLogExporter
    exporter = FailoverLogExporter(["file://" + sys.argv[1] + "/out"], queue_dir=sys.argv[1] + "/q")
    provider = LoggerProvider()
    provider.add_log_record_processor(EventClassifierProcessor())
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    log = logging.getLogger("svc")
    log.addHandler(LoggingHandler(logger_provider=provider))
    log.setLevel(logging.INFO)
    for status in [200, 200, 401, 500]:
        log.info("req", extra={"http.response.status_code": status, "http.route": "/api/login"})
    provider.force_flush()
    assert exporter.force_flush(10000)
    out = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [[dict(p.attributes), p.value] for p in m.data.data_points]
    provider.shutdown()
    print(json.dumps(out))
""")


def test_counters_and_gauges_are_published(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    metrics = json.loads(run.stdout.strip().splitlines()[-1])
    classified = {p[0]["event_class"]: p[1] for p in metrics["otel_ext.classifier.classified"]}
    assert classified == {"access": 2, "security": 1, "error": 1}
    assert metrics["otel_ext.exporter.delivered"] == [[{"backend": f"file://{tmp_path}/out"}, 4]]
    assert metrics["otel_ext.queue.appended"] == [[{}, 4]]
    assert [p[1] for p in metrics["otel_ext.queue.depth"]] == [0.0]
    assert [p[1] for p in metrics["otel_ext.exporter.active_backend_level"]] == [0.0]
