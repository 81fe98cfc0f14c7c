"""The ``otel-ext`` command. Never prints secrets: it shows rule ids, labels and counts only."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from otel_ext.classify import RuleFileError, build_ruleset


def _queue_dir(args: argparse.Namespace) -> Path:
    from otel_ext.auto.settings import load_settings

    return Path(args.queue_dir) if args.queue_dir else load_settings().effective_queue_dir


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def _cmd_queue_status(args: argparse.Namespace) -> int:
    from otel_ext.queue import list_queue_files, read_stats
    from otel_ext.queue.ownership import dir_problem
    from otel_ext.queue.salvage import list_quarantine

    directory = _queue_dir(args)
    problem = dir_problem(directory) if directory.exists() or directory.is_symlink() else None
    if problem:
        print(f"warning: queue directory {directory} {problem}; otel-ext refuses to use it", file=sys.stderr)
    files = list_queue_files(directory) if directory.is_dir() else []
    print(f"queue dir {directory}: {len(files)} queue file(s)")
    print(f"{'file':32} {'owner':>8} {'state':8} {'records':>9} {'bytes':>11} {'oldest':>8} {'dead':>6}")
    total = 0
    for info in files:
        try:
            st = read_stats(info.db_path)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{info.db_path.name:32} {info.owner_pid or '?':>8} unreadable: {type(exc).__name__}")
            continue
        total += st.records
        state = "running" if info.alive else "orphan"
        print(f"{info.db_path.name:32} {info.owner_pid or '?':>8} {state:8} {st.records:>9} {st.bytes:>11} "
              f"{_age(st.oldest_age_s):>8} {st.dead_letter_records:>6}")
    print(f"total pending records: {total}")
    quarantined = list_quarantine(directory) if directory.is_dir() else []
    if quarantined:
        print(f"quarantined (damaged, kept for inspection in {directory / 'quarantine'}): {len(quarantined)} file(s)")
        for item in quarantined:
            print(f"  {item.path.name} ({item.bytes} bytes): {item.reason}")
    return 0


def _cmd_queue_drain(args: argparse.Namespace) -> int:
    from otel_ext.auto.settings import load_settings
    from otel_ext.export import FailoverLogExporter

    overrides = {"backends": args.backends} if args.backends else {}
    settings = load_settings(**overrides)
    exporter = FailoverLogExporter(settings=settings, queue_dir=_queue_dir(args), shutdown_timeout=1.0)
    pending = exporter.queue.pending_records
    print(f"draining {pending} records to {', '.join(b.describe() for b in exporter.backends)}")
    done = exporter.force_flush(int(args.timeout * 1000))
    stats = exporter.stats()
    exporter.shutdown()
    for backend, count in sorted(stats["counters"].get("delivered", {}).items()):
        print(f"delivered {count} records to {backend}")
    left = stats["queue"]["records"]
    print(f"{'done' if done else 'timed out'}: {left} records still queued, "
          f"{stats['queue']['dead_letter_records']} in the dead-letter store")
    return 0 if done else 1


def _cmd_queue_purge(args: argparse.Namespace) -> int:
    from otel_ext.queue import PersistentQueue, orphans

    if not args.yes:
        print("otel-ext: purge deletes queued records for good; add --yes to confirm", file=sys.stderr)
        return 2
    total = 0
    for orphan in orphans(_queue_dir(args)):
        queue = PersistentQueue(orphan.db_path)
        purged = queue.purge()
        queue.close()
        orphan.release(remove=not args.keep_dead_letters)
        print(f"purged {purged} records from {orphan.db_path.name}")
        total += purged
    print(f"purged {total} records (queues of running processes are left alone)")
    return 0


def _cmd_queue_dead_letters(args: argparse.Namespace) -> int:
    from otel_ext.queue import PersistentQueue, orphans

    shown = 0
    for orphan in orphans(_queue_dir(args)):
        queue = PersistentQueue(orphan.db_path)
        for letter in queue.dead_letters():
            shown += 1
            print(f"{orphan.db_path.name} #{letter.id} backend={letter.backend} records={letter.records} "
                  f"classes={letter.classes} reason={letter.reason[:200]!r}")
        if args.replay:
            moved = queue.requeue_dead_letters()
            print(f"requeued {moved} records from {orphan.db_path.name}; run 'otel-ext queue drain' to send them")
        queue.close()
        orphan.release(remove=False)
    print(f"{shown} dead-letter entries (queues of running processes are not touched)")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    ruleset = build_ruleset(rules_file=args.rules)
    s = ruleset.settings
    print(f"slow_request_ms={s.slow_request_ms:g} slow_routes={dict(s.slow_routes)}")
    print(f"access_loggers={list(s.access_loggers)}")
    print(f"{'id':36} {'class':12} {'action':28} when")
    for rule in ruleset.rules:
        when = ", ".join(str(k) for k in rule.source.get("when", {}))
        print(f"{rule.id:36} {rule.event_class:12} {rule.action or '-':28} {when}")
    print(f"{len(ruleset.rules)} rules")
    return 0


def _cmd_check_rules(args: argparse.Namespace) -> int:
    from otel_ext.classify.loader import read_rule_document
    from otel_ext.detect import DetectorConfig

    ruleset = build_ruleset(rules_file=args.file, use_env=False)
    doc = read_rule_document(args.file)
    detectors = DetectorConfig.parse(doc.get("detectors") if isinstance(doc, dict) else None, None, args.file)
    enabled = ", ".join(detectors.enabled) or "none"
    print(f"{args.file}: ok ({len(ruleset.rules)} effective rules, detectors: {enabled})")
    return 0


def _cmd_es_setup(args: argparse.Namespace) -> int:
    from otel_ext.backends.elasticsearch import from_url
    from otel_ext.backends.elasticsearch.setup import parse_retention, setup
    from otel_ext.backends.urls import parse_backend_url

    plugin, url = parse_backend_url(args.backend, source="--backend", default_timeout=30.0)
    if plugin.name != "elasticsearch":
        raise ValueError("--backend must be an elasticsearch+http(s):// or opensearch+http(s):// URL")
    backend = from_url(url)
    lines, ok = setup(backend, parse_retention(args.retention))
    print(f"{backend.describe()}:")
    for line in lines:
        print(f"  {line}")
    backend.close()
    return 0 if ok else 1


def _cmd_archive(args: argparse.Namespace) -> int:
    from otel_ext import archive

    if args.archive_command == "setup":
        return archive.run_setup(args.backend, args.retention, print)
    return archive.run_replay(args.source, args.to, args.since, args.until, args.event_class, print)


def _cmd_collector_config(args: argparse.Namespace) -> int:
    from otel_ext.collector import render_configs

    files, unsupported = render_configs(build_ruleset(rules_file=args.rules, use_env=args.rules is None))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    for line in unsupported:
        print(f"otel-ext: NOT RENDERED (OTTL cannot express it): {line}", file=sys.stderr)
    return 1 if unsupported else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-ext", description="otel-ext: OpenTelemetry extensions for API services")
    sub = parser.add_subparsers(dest="command", required=True)
    rules = sub.add_parser("rules", help="list the effective classification rules")
    rules.add_argument("--rules", help="a YAML rule file (default: $OTEL_EXT_RULES_FILE)")
    rules.set_defaults(func=_cmd_rules)
    check = sub.add_parser("check-rules", help="validate a YAML rule file")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_rules)
    col = sub.add_parser("collector-config", help="render collector configs (classify.yaml from the rules)")
    col.add_argument("--rules", help="a YAML rule file (default: built-ins + $OTEL_EXT_RULES_FILE)")
    col.add_argument("--out", default="collector_configs", help="directory to write (default: collector_configs)")
    col.set_defaults(func=_cmd_collector_config)
    es = sub.add_parser("elasticsearch", help="Elasticsearch/OpenSearch set-up")
    es_sub = es.add_subparsers(dest="es_command", required=True)
    es_setup = es_sub.add_parser("setup", help="install per-class data stream templates and retention")
    es_setup.add_argument("--backend", required=True, help="elasticsearch+http(s)://host:9200 or opensearch+…; "
                          "credentials from OTEL_EXT_ES_API_KEY / OTEL_EXT_ES_USERNAME + OTEL_EXT_ES_PASSWORD")
    es_setup.add_argument("--retention", help="e.g. security=365d,access=14d (defaults: security 365d, error 90d, "
                          "access 30d, performance 14d, application 7d)")
    es_setup.set_defaults(func=_cmd_es_setup)
    arc = sub.add_parser("archive", help="S3 archive: per-class lifecycle rules, replay into a backend")
    arc_sub = arc.add_subparsers(dest="archive_command", required=True)
    arc_setup = arc_sub.add_parser("setup", help="install per-class S3 lifecycle rules (idempotent)")
    arc_setup.add_argument("--backend", required=True, help="s3://bucket/prefix?region=…&endpoint=…")
    arc_setup.add_argument("--retention", help="e.g. security=365d,access=14d (defaults as for elasticsearch setup)")
    arc_replay = arc_sub.add_parser("replay", help="re-deliver archived records to a backend")
    arc_replay.add_argument("--from", dest="source", required=True, help="s3://bucket/prefix?…")
    arc_replay.add_argument("--to", required=True, help="a backend URL, e.g. elasticsearch+https://es:9200")
    arc_replay.add_argument("--since", help="2026-11-26T16:00Z, or 2h / 7d ago")
    arc_replay.add_argument("--until", help="same forms as --since")
    arc_replay.add_argument("--class", dest="event_class", action="append", help="only this class (repeatable)")
    arc.set_defaults(func=_cmd_archive)
    queue = sub.add_parser("queue", help="inspect and drain persistent queues (works with no app running)")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    for name, func, text in (
        ("status", _cmd_queue_status, "queue files, owners and pending records"),
        ("drain", _cmd_queue_drain, "deliver the queues of dead processes to the configured backends"),
        ("purge", _cmd_queue_purge, "delete the pending records of dead processes' queues"),
        ("dead-letters", _cmd_queue_dead_letters, "list (and --replay) permanently rejected records"),
    ):
        cmd = queue_sub.add_parser(name, help=text)
        cmd.add_argument("--queue-dir", help="default: $OTEL_EXT_QUEUE_DIR or the user state dir")
        cmd.set_defaults(func=func)
        if name == "drain":
            cmd.add_argument("--backends", help="comma-separated backend URLs (default: $OTEL_EXT_BACKENDS)")
            cmd.add_argument("--timeout", type=float, default=60.0, help="seconds to keep trying (default 60)")
        if name == "purge":
            cmd.add_argument("--yes", action="store_true", help="confirm the deletion")
            cmd.add_argument("--keep-dead-letters", action="store_true")
        if name == "dead-letters":
            cmd.add_argument("--replay", action="store_true", help="move them back into the queue")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="otel-ext: %(message)s")
    from otel_ext.selflog import suppressed

    try:
        with suppressed():  # nothing we do here is captured by instrumentation in this process
            return int(args.func(args))
    except (RuleFileError, ValueError) as exc:
        print(f"otel-ext: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
