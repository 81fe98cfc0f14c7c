"""The ``otel-ext`` command (Click + Rich). Never prints secrets: rule ids, labels, counts, backend
names and paths only.

Output: tables sized to the terminal on a TTY, plain aligned text when piped, JSON with ``--json``
on every command (one document on stdout). Progress bars (stderr, TTY only) for ``queue drain``,
``queue dead-letters --replay`` and ``report``.

Exit codes:
  0    done
  1    done partly: drain timed out, setup not fully applied, rules OTTL cannot express
  2    usage or configuration error (bad flag, bad rule file, bad URL)
  3    a backend refused or could not be reached (report from a search backend)
  130  interrupted (Ctrl-C)
  141  output closed early (e.g. piped into ``head``); nothing else is printed
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from otel_ext.classify import RuleFileError, build_ruleset
from otel_ext.queue.store import QueueError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("otel-ext")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


# --- output ---------------------------------------------------------------------------------------

_CONTROL = {c: "?" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def clean(text: str) -> str:
    """One line of printable text: control characters (escape sequences from a remote error
    message, newlines) become ``?`` so nothing can move the cursor or fake a row."""
    return text.translate(_CONTROL)


class Out:
    """Where a command's results go: a Rich table on a terminal, plain aligned columns in a pipe,
    or collected into one JSON document (``--json``)."""

    def __init__(self, as_json: bool) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)
        self.doc: dict[str, Any] = {}

    @property
    def tty(self) -> bool:
        return bool(self.console.is_terminal)

    def line(self, text: str = "") -> None:
        text = clean(text)
        if not self.as_json:
            if self.tty:
                from rich.text import Text

                self.console.print(Text(text))
            else:
                sys.stdout.write(text + "\n")

    def warn(self, text: str) -> None:
        click.echo(f"otel-ext: {text}", err=True)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
              numeric: Iterable[int] = (), keep: Iterable[int] = ()) -> None:
        """``numeric`` columns are right-aligned; they and the ``keep`` columns never wrap (on a
        narrow terminal the other columns fold instead)."""
        rows = [[("-" if v is None else clean(str(v))) for v in row] for row in rows]
        if self.as_json:
            return
        right = set(numeric)
        whole = right | set(keep)
        if self.tty:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=title, title_justify="left", header_style="bold", expand=False)
            for i, h in enumerate(headers):
                table.add_column(h, justify="right" if i in right else "left", overflow="fold",
                                 no_wrap=i in whole, min_width=len(h) if i in whole else None)
            for row in rows:
                table.add_row(*(Text(v) for v in row))  # Text: data is never read as Rich markup
            self.console.print(table)
            return
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

        if title:
            sys.stdout.write(title + "\n")
        sys.stdout.write(fmt(headers) + "\n")
        for row in rows:
            sys.stdout.write(fmt(row) + "\n")

    def emit(self) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(self.doc, indent=2, default=str) + "\n")

    def progress(self, description: str, total: float | None) -> Any:
        """A Rich progress bar on stderr (disabled when stderr is not a terminal or with --json)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.err, transient=True,
                            disable=self.as_json or not self.err.is_terminal)
        return progress, description, total


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")(func)


def queue_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--queue-dir", help="default: $OTEL_EXT_QUEUE_DIR or the user state dir")(func)


def _queue_dir(queue_dir: str | None) -> Path:
    from otel_ext.settings import load_settings

    return Path(queue_dir) if queue_dir else load_settings().effective_queue_dir


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# --- the command group --------------------------------------------------------------------------

class _OutputClosed(Exception):
    """Raised instead of BrokenPipeError so that Click does not turn it into a plain exit 1."""


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _OutputClosed() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(_version(), "--version", prog_name="otel-ext", message="%(prog)s %(version)s")
def cli() -> None:
    """otel-ext: OpenTelemetry extensions for API services.

    \b
    Exit codes: 0 done, 1 done partly (drain timed out, setup incomplete), 2 usage or
    configuration error, 3 backend refused or unreachable, 130 interrupted, 141 output closed.
    """


# --- status -----------------------------------------------------------------------------------

def _queue_rows(directory: Path) -> list[dict[str, Any]]:
    from otel_ext.queue import list_queue_files, read_stats
    from otel_ext.status import is_stale, read_status, status_path

    rows = []
    files = list_queue_files(directory) if directory.is_dir() else []
    for info in files:
        row: dict[str, Any] = {"file": info.db_path.name, "owner_pid": info.owner_pid,
                               "state": "running" if info.alive else "orphan"}
        try:
            st = read_stats(info.db_path)
            row.update(records=st.records, bytes=st.bytes, oldest_age_s=st.oldest_age_s,
                       dead_letter_records=st.dead_letter_records)
        except Exception as exc:  # noqa: BLE001 - report and go on
            row.update(state="unreadable", error=type(exc).__name__, records=None, bytes=None, oldest_age_s=None,
                       dead_letter_records=None)
        row["quarantined"] = sorted(p.name for p in directory.glob(f"{info.db_path.name}.corrupt-*")
                                    if not p.name.endswith(("-wal", "-shm")))
        doc = read_status(status_path(info.db_path)) if info.alive else None
        if doc is not None and doc.get("pid") == info.owner_pid:
            row["backends"] = [b for b in doc.get("backends", []) if isinstance(b, dict)]
            row["policy"] = doc.get("policy")
            row["status_stale"] = is_stale(doc)
        rows.append(row)
    return rows


def _quarantine_dir_files(directory: Path) -> list[dict[str, Any]]:
    """Damaged queue files moved aside by adoption (``quarantine/`` with a reason file each)."""
    from otel_ext.queue.salvage import list_quarantine

    if not directory.is_dir():
        return []
    return [{"file": q.path.name, "reason": q.reason, "bytes": q.bytes} for q in list_quarantine(directory)]


def _warn_dir_problem(out: Out, directory: Path) -> None:
    from otel_ext.queue.segments import dir_problem

    if directory.exists() or directory.is_symlink():
        problem = dir_problem(directory)
        if problem:
            out.warn(f"warning: queue directory {directory} {problem}; otel-ext refuses to use it")


def _backends_text(row: dict[str, Any]) -> tuple[str, str]:
    if "backends" not in row:
        return ("-" if row["state"] != "running" else "(no status file)"), "-"
    names = []
    active = "-"
    for b in row["backends"]:
        names.append(f"{b.get('name')}{'' if b.get('up') else ' (down)'}")
        if b.get("active"):
            active = str(b.get("name"))
    stale = " (stale)" if row.get("status_stale") else ""
    return ", ".join(names) or "-", active + stale


@cli.command("status")
@queue_dir_option
@json_option
def status_cmd(queue_dir: str | None, as_json: bool) -> int:
    """Every queue in the queue directory: owner, running/orphan, depth, oldest age, dead letters,
    quarantined files; for running processes their backends and which one is active."""
    out = Out(as_json)
    directory = _queue_dir(queue_dir)
    rows = _queue_rows(directory)
    _warn_dir_problem(out, directory)
    quarantine = _quarantine_dir_files(directory)
    out.doc = {"queue_dir": str(directory), "queues": rows, "quarantine": quarantine,
               "total_pending_records": sum(r["records"] or 0 for r in rows)}
    out.line(f"queue dir {directory}: {len(rows)} queue file(s)")
    table = []
    for r in rows:
        backends, active = _backends_text(r)
        table.append([r["file"], r["owner_pid"] or "?", r["state"], r["records"], _age(r["oldest_age_s"]),
                      r["dead_letter_records"], len(r["quarantined"]), backends, active])
    out.table(["queue", "pid", "state", "records", "oldest", "dead", "quar.", "backends", "active"], table,
              numeric=(1, 3, 4, 5, 6), keep=(2,))
    for item in quarantine:
        out.line(f"quarantined: {directory / 'quarantine' / item['file']} ({item['bytes']} bytes): {item['reason']}")
    out.line(f"total pending records: {out.doc['total_pending_records']}")
    out.emit()
    return EXIT_OK


# --- queue ------------------------------------------------------------------------------------

@cli.group("queue")
def queue_group() -> None:
    """Inspect and drain persistent queues (works with no app running)."""


@queue_group.command("status")
@queue_dir_option
@json_option
def queue_status(queue_dir: str | None, as_json: bool) -> int:
    """Queue files, owners and pending records."""
    out = Out(as_json)
    directory = _queue_dir(queue_dir)
    _warn_dir_problem(out, directory)
    rows = _queue_rows(directory)
    total = sum(r["records"] or 0 for r in rows)
    quarantine = _quarantine_dir_files(directory)
    out.doc = {"queue_dir": str(directory), "queues": rows, "total_pending_records": total,
               "quarantine": quarantine}
    out.line(f"queue dir {directory}: {len(rows)} queue file(s)")
    out.table(["file", "owner", "state", "records", "bytes", "oldest", "dead"],
              ([r["file"], r["owner_pid"] or "?", r["state"], r["records"], r["bytes"], _age(r["oldest_age_s"]),
                r["dead_letter_records"]] for r in rows), numeric=(1, 3, 4, 5, 6), keep=(2,))
    out.line(f"total pending records: {total}")
    if quarantine:
        out.line(f"quarantined (damaged, kept for inspection in {directory / 'quarantine'}): {len(quarantine)} file(s)")
        for item in quarantine:
            out.line(f"  {item['file']} ({item['bytes']} bytes): {item['reason']}")
    out.emit()
    return EXIT_OK


@queue_group.command("drain")
@queue_dir_option
@click.option("--backends", help="comma-separated backend URLs (default: $OTEL_EXT_BACKENDS)")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="seconds to keep trying")
@json_option
def queue_drain(queue_dir: str | None, backends: str | None, timeout: float, as_json: bool) -> int:
    """Deliver the queues of dead processes to the configured backends."""
    import threading

    from otel_ext.export import FailoverLogExporter
    from otel_ext.settings import load_settings

    out = Out(as_json)
    settings = load_settings(backends=backends) if backends else load_settings()
    exporter = FailoverLogExporter(settings=settings, queue_dir=_queue_dir(queue_dir), shutdown_timeout=1.0)
    try:
        pending = exporter.queue.pending_records
        out.line(f"draining {pending} records to {', '.join(b.describe() for b in exporter.backends)}")
        result: list[bool] = []
        worker = threading.Thread(target=lambda: result.append(exporter.force_flush(int(timeout * 1000))),
                                  name="otel-ext-drain", daemon=True)
        progress, description, _ = out.progress("draining", pending)
        with progress:
            task = progress.add_task(description, total=pending or 1)
            worker.start()
            while worker.is_alive():
                worker.join(0.2)
                left = exporter.stats()["queue"]["records"]
                progress.update(task, completed=max(0, pending - left))
        done = bool(result and result[0])
        stats = exporter.stats()
    finally:
        exporter.shutdown()
    delivered = dict(sorted(stats["counters"].get("delivered", {}).items()))
    for backend, count in delivered.items():
        out.line(f"delivered {count} records to {backend}")
    left = stats["queue"]["records"]
    dead = stats["queue"]["dead_letter_records"]
    out.line(f"{'done' if done else 'timed out'}: {left} records still queued, {dead} in the dead-letter store")
    out.doc = {"done": done, "delivered": delivered, "queued": left, "dead_letter_records": dead}
    out.emit()
    return EXIT_OK if done else EXIT_PARTIAL


@queue_group.command("purge")
@queue_dir_option
@click.option("--yes", is_flag=True, help="confirm the deletion")
@click.option("--keep-dead-letters", is_flag=True)
@json_option
def queue_purge(queue_dir: str | None, yes: bool, keep_dead_letters: bool, as_json: bool) -> int:
    """Delete the pending records of dead processes' queues."""
    from otel_ext.queue import PersistentQueue, orphans

    out = Out(as_json)
    if not yes:
        out.warn("purge deletes queued records for good; add --yes to confirm")
        return EXIT_USAGE
    total = 0
    files = []
    for orphan in orphans(_queue_dir(queue_dir)):
        queue = PersistentQueue(orphan.db_path)
        purged = queue.purge()
        queue.close()
        orphan.release(remove=not keep_dead_letters)
        out.line(f"purged {purged} records from {orphan.db_path.name}")
        files.append({"file": orphan.db_path.name, "purged": purged})
        total += purged
    out.line(f"purged {total} records (queues of running processes are left alone)")
    out.doc = {"purged": total, "files": files}
    out.emit()
    return EXIT_OK


@queue_group.command("dead-letters")
@queue_dir_option
@click.option("--replay", is_flag=True, help="move them back into the queue")
@json_option
def queue_dead_letters(queue_dir: str | None, replay: bool, as_json: bool) -> int:
    """List (and --replay) permanently rejected records."""
    from otel_ext.queue import PersistentQueue, orphans

    out = Out(as_json)
    letters: list[dict[str, Any]] = []
    requeued: dict[str, int] = {}
    claimed = list(orphans(_queue_dir(queue_dir)))
    progress, _, _ = out.progress("replaying dead letters", len(claimed))
    with progress:
        task = progress.add_task("replaying" if replay else "reading", total=len(claimed) or 1)
        for orphan in claimed:
            queue = PersistentQueue(orphan.db_path)
            try:
                for letter in queue.dead_letters():
                    letters.append({"file": orphan.db_path.name, "id": letter.id, "backend": letter.backend,
                                    "records": letter.records, "classes": letter.classes,
                                    "reason": letter.reason[:200]})
                if replay:
                    requeued[orphan.db_path.name] = queue.requeue_dead_letters()
            finally:
                queue.close()
                orphan.release(remove=False)
            progress.advance(task)
    out.table(["file", "#", "backend", "records", "classes", "reason"],
              ([x["file"], x["id"], x["backend"], x["records"], x["classes"], x["reason"]] for x in letters),
              numeric=(1, 3))
    for name, moved in requeued.items():
        out.line(f"requeued {moved} records from {name}; run 'otel-ext queue drain' to send them")
    out.line(f"{len(letters)} dead-letter entries (queues of running processes are not touched)")
    out.doc = {"dead_letters": letters, "requeued": requeued}
    out.emit()
    return EXIT_OK


# --- rules and collector ---------------------------------------------------------------------

@cli.command("rules")
@click.option("--rules", "rules_file", help="a YAML rule file (default: $OTEL_EXT_RULES_FILE)")
@json_option
def rules_cmd(rules_file: str | None, as_json: bool) -> int:
    """List the effective classification rules."""
    out = Out(as_json)
    ruleset = build_ruleset(rules_file=rules_file)
    s = ruleset.settings
    out.line(f"slow_request_ms={s.slow_request_ms:g} slow_routes={dict(s.slow_routes)}")
    out.line(f"access_loggers={list(s.access_loggers)}")
    rows = [[rule.id, rule.event_class, rule.action or "-", ", ".join(str(k) for k in rule.source.get("when", {}))]
            for rule in ruleset.rules]
    out.table(["id", "class", "action", "when"], rows)
    out.line(f"{len(ruleset.rules)} rules")
    out.doc = {"slow_request_ms": s.slow_request_ms, "slow_routes": dict(s.slow_routes),
               "access_loggers": list(s.access_loggers),
               "rules": [{"id": r[0], "class": r[1], "action": r[2], "when": r[3]} for r in rows]}
    out.emit()
    return EXIT_OK


@cli.command("check-rules")
@click.argument("file")
@json_option
def check_rules(file: str, as_json: bool) -> int:
    """Validate a YAML rule file."""
    from otel_ext.classify.loader import read_rule_document
    from otel_ext.detect import DetectorConfig

    out = Out(as_json)
    ruleset = build_ruleset(rules_file=file, use_env=False)
    doc = read_rule_document(file)
    detectors = DetectorConfig.parse(doc.get("detectors") if isinstance(doc, dict) else None, None, file)
    enabled = ", ".join(detectors.enabled) or "none"
    out.line(f"{file}: ok ({len(ruleset.rules)} effective rules, detectors: {enabled})")
    out.doc = {"file": file, "ok": True, "rules": len(ruleset.rules), "detectors": list(detectors.enabled)}
    out.emit()
    return EXIT_OK


@cli.command("collector-config")
@click.option("--rules", "rules_file", help="a YAML rule file (default: built-ins + $OTEL_EXT_RULES_FILE)")
@click.option("--out", "out_dir", default="collector_configs", show_default=True, help="directory to write")
@json_option
def collector_config(rules_file: str | None, out_dir: str, as_json: bool) -> int:
    """Render collector configs (classify.yaml from the rules)."""
    from otel_ext.collector import render_configs

    out = Out(as_json)
    files, unsupported = render_configs(build_ruleset(rules_file=rules_file, use_env=rules_file is None))
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text, encoding="utf-8")
        out.line(f"wrote {target / name}")
    for line in unsupported:
        out.warn(f"NOT RENDERED (OTTL cannot express it): {line}")
    out.doc = {"written": [str(target / n) for n in files], "not_rendered": list(unsupported)}
    out.emit()
    return EXIT_PARTIAL if unsupported else EXIT_OK


# --- elasticsearch ---------------------------------------------------------------------------

@cli.group("elasticsearch")
def es_group() -> None:
    """Elasticsearch/OpenSearch set-up."""


@es_group.command("setup")
@click.option("--backend", required=True, help="elasticsearch+http(s)://host:9200 or opensearch+…; credentials from "
              "OTEL_EXT_ES_API_KEY / OTEL_EXT_ES_USERNAME + OTEL_EXT_ES_PASSWORD")
@click.option("--retention", help="e.g. security=365d,access=14d (defaults: security 365d, error 90d, access 30d, "
              "performance 14d, application 7d)")
@json_option
def es_setup(backend: str, retention: str | None, as_json: bool) -> int:
    """Install per-class data stream templates and retention."""
    from otel_ext.backends.elasticsearch import from_url
    from otel_ext.backends.elasticsearch.setup import parse_retention, setup
    from otel_ext.backends.urls import parse_backend_url

    out = Out(as_json)
    plugin, url = parse_backend_url(backend, source="--backend", default_timeout=30.0)
    if plugin.name != "elasticsearch":
        out.warn("error: --backend must be an elasticsearch+http(s):// or opensearch+http(s):// URL")
        return EXIT_USAGE
    target = from_url(url)
    try:
        lines, ok = setup(target, parse_retention(retention))
    finally:
        target.close()
    out.line(f"{target.describe()}:")
    for line in lines:
        out.line(f"  {line}")
    out.doc = {"backend": target.describe(), "ok": ok, "steps": lines}
    out.emit()
    return EXIT_OK if ok else EXIT_PARTIAL


# --- archive (S3) ----------------------------------------------------------------------------

@cli.group("archive")
def archive_group() -> None:
    """S3 archive: per-class lifecycle rules, replay into a backend."""


@archive_group.command("setup")
@click.option("--backend", required=True, help="s3://bucket/prefix?region=…&endpoint=…")
@click.option("--retention", help="e.g. security=365d,access=14d (defaults as for elasticsearch setup)")
@json_option
def archive_setup(backend: str, retention: str | None, as_json: bool) -> int:
    """Install per-class S3 lifecycle rules (idempotent); prints what it did."""
    from otel_ext import archive

    out = Out(as_json)
    lines: list[str] = []
    code = archive.run_setup(backend, retention, lines.append)
    for line in lines:
        out.line(line)
    out.doc = {"backend": lines[0].rstrip(":") if lines else backend.split("?")[0], "ok": code == 0,
               "steps": [line.strip() for line in lines[1:]]}
    out.emit()
    return code


@archive_group.command("replay")
@click.option("--from", "source", required=True, help="s3://bucket/prefix?…")
@click.option("--to", "to", required=True, help="a backend URL, e.g. elasticsearch+https://es:9200")
@click.option("--since", help="2026-11-26T16:00Z, or 2h / 7d ago")
@click.option("--until", help="same forms as --since")
@click.option("--class", "event_class", multiple=True, help="only this class (repeatable)")
@click.option("--slack", help="records are selected by their own time; objects archived up to this long "
              "before --since or after --until are searched too (default 24h)")
@json_option
def archive_replay(source: str, to: str, since: str | None, until: str | None, event_class: tuple[str, ...],
                   slack: str | None, as_json: bool) -> int:
    """Re-deliver archived records to a backend (idempotent into Elasticsearch via log.record.uid)."""
    from otel_ext import archive

    out = Out(as_json)
    lines: list[str] = []
    code = archive.run_replay(source, to, since, until, list(event_class) or None, lines.append, slack=slack)
    for line in lines:
        out.line(line)
    out.doc = {"ok": code == 0, "lines": lines}
    out.emit()
    return code


# --- report ----------------------------------------------------------------------------------

@cli.command("report")
@click.option("--backend", help="an elasticsearch+http(s):// or opensearch+http(s):// URL (aggregations), "
              "or file:///dir (the file backend's OTLP JSON), or s3://bucket/prefix?… (the archive); "
              "default: the configured file backend")
@click.option("--out", "out_file", default="otel-ext-report.html", show_default=True, help="the HTML file to write")
@click.option("--client-attribute", default="tenant.id", show_default=True,
              help="the attribute that names an API client (falls back to '(anonymous)')")
@click.option("--index", default="logs-*", show_default=True, help="index pattern (search backends)")
@click.option("--retention", help="retention per class for the volume section, e.g. access=30d (search backends: "
              "read from otel-ext's templates when not given)")
@click.option("--title", default="API usage report", show_default=True)
@json_option
def report_cmd(backend: str | None, out_file: str, client_attribute: str, index: str, retention: str | None,
               title: str, as_json: bool) -> int:
    """Write one self-contained HTML report (works offline): calls per client x route with a
    pricing-tier suggestion, errors and latency per route with detector alerts, security events,
    volume per class and what retention keeps."""
    from otel_ext.backends.elasticsearch.setup import DEFAULT_RETENTION_DAYS, parse_retention
    from otel_ext.report import OTLPJsonFileReader, write_report
    from otel_ext.report.model import Aggregator, suggest_tiers

    out = Out(as_json)
    try:
        import plotly  # noqa: F401 - the report embeds plotly.js from this package
    except ImportError:
        out.warn("error: the report needs Plotly: pip install 'otel-ext[report]'")
        return EXIT_USAGE
    retention_days = parse_retention(retention) if retention else None
    url = backend or _default_file_backend()
    started = time.monotonic()
    if url.startswith("file://"):
        reader = OTLPJsonFileReader(url.removeprefix("file://"))
        if not reader.path.exists():
            out.warn(f"error: {reader.path} does not exist")
            return EXIT_USAGE
        total_bytes = sum(p.stat().st_size for p in reader.files())
        progress, _, _ = out.progress("reading records", None)
        with progress:
            task = progress.add_task(f"reading {reader.describe()}", total=None)
            aggregator = Aggregator(client_attribute, reader.describe(),
                                    retention_days or dict(DEFAULT_RETENTION_DAYS),
                                    progress=lambda n: progress.update(task, completed=n))
            data = aggregator.build(reader.records())
        if reader.bad_lines:
            out.warn(f"skipped {reader.bad_lines} damaged line(s) in {reader.describe()}")
        scanned: dict[str, Any] = {"files": len(reader.files()), "bytes": total_bytes}
    elif url.startswith("s3://"):
        from otel_ext.report.records import S3ArchiveReader

        archive = S3ArchiveReader(url)
        progress, _, _ = out.progress("reading records", None)
        with progress:
            task = progress.add_task(f"reading {archive.describe()}", total=None)
            aggregator = Aggregator(client_attribute, archive.describe(),
                                    retention_days or dict(DEFAULT_RETENTION_DAYS),
                                    progress=lambda n: progress.update(task, completed=n))
            data = aggregator.build(archive.records())
        if archive.bad_objects:
            out.warn(f"skipped {archive.bad_objects} unreadable object(s) in {archive.describe()}")
        scanned = {"objects": archive.objects, "bytes": archive.bytes}
    else:
        from otel_ext.report.search import SearchError, search_source_from_url

        try:
            source = search_source_from_url(url, index, client_attribute, retention_days)
            data = source.build()
        except SearchError as exc:
            out.warn(f"error: {exc}")
            return EXIT_BACKEND
        scanned = {"index": index}
    try:
        path = write_report(data, out_file, title=title)
    except OSError as exc:
        out.warn(f"error: cannot write {out_file}: {exc.strerror or exc}")
        return EXIT_USAGE
    tiers = suggest_tiers({c: data.monthly(n) for c, n in data.client_totals().items()})
    out.line(f"wrote {path.resolve()} ({data.records} records, {len(data.usage)} clients, {len(data.routes)} routes, "
             f"{data.alerts_total} alerts) in {time.monotonic() - started:.1f}s")
    out.doc = {"report": str(path.resolve()), "source": data.source, "records": data.records, "scanned": scanned,
               "clients": data.client_totals(include_anonymous=True),
               "tiers": [{"name": t.name, "from": t.low, "to": t.high, "clients": t.clients} for t in tiers],
               "alerts": data.alerts_total}
    out.emit()
    return EXIT_OK


def _default_file_backend() -> str:
    from otel_ext.settings import load_settings

    for url in load_settings().effective_backends:
        if url.startswith("file://"):
            return url
    raise click.UsageError("no file backend is configured: pass --backend URL")


# --- entry point -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="otel-ext: %(message)s")
    try:
        try:
            from otel_ext.selflog import suppressed

            with suppressed():  # nothing we do here is captured by instrumentation in this process
                code = cli.main(args=list(argv) if argv is not None else None, prog_name="otel-ext",
                                standalone_mode=False)
        except click.ClickException as exc:  # usage errors, also "no command given"
            exc.show()
            return EXIT_USAGE
        except click.exceptions.Exit as exc:  # --version, --help
            return int(exc.exit_code)
        except click.Abort:
            click.echo("otel-ext: interrupted", err=True)
            return EXIT_INTERRUPTED
        except (RuleFileError, ValueError) as exc:
            click.echo(f"otel-ext: error: {exc}", err=True)
            return EXIT_USAGE
        except (QueueError, sqlite3.Error, OSError) as exc:  # a full disk, an unreadable queue file: one line
            if isinstance(exc, BrokenPipeError):
                raise
            click.echo(f"otel-ext: error: {type(exc).__name__}: {exc}", err=True)
            return EXIT_PARTIAL
        sys.stdout.flush()
        return int(code) if isinstance(code, int) else EXIT_OK
    except KeyboardInterrupt:
        click.echo("otel-ext: interrupted", err=True)
        return EXIT_INTERRUPTED
    except (BrokenPipeError, _OutputClosed):
        return _quiet_broken_pipe()


def _quiet_broken_pipe() -> int:
    """The reader went away (e.g. ``| head``): say nothing more, and keep the exit-time flush quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
