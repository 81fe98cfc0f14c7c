"""``otel-ext archive setup`` and ``otel-ext archive replay``: the S3 archive's retention and its way
back into a search store.

setup: one lifecycle rule per event class (``otel-ext-<class>``, filter ``<prefix>/<class>/``,
expiration after the class's retention; defaults as for Elasticsearch: security 365 d, error 90 d,
access 30 d, performance 14 d, application 7 d) plus clean-up of abandoned multipart uploads. Rules
of the bucket that are not ours are kept. Idempotent: a second run reports every rule unchanged and
writes nothing.

replay: selects records by their own time, not by when they were archived. An object's time
partition is its *write* time (the PUT), and a record can be archived long after it happened (it
waited in our queue while the archive was unreachable) or, with a skewed clock, stamped after it was
written. So the objects read are those whose partition lies in ``[since - slack, until + slack]``
(``slack`` default 24 h, ``--slack``), and inside them each record is kept only if its own time
(``time_unix_nano``, else ``observed_time_unix_nano``) lies in ``[since, until]``; a record with no
time at all is judged by its object's partition. A record archived more than ``slack`` after it
happened is outside the search: widen ``--slack`` to find it. Records read but outside the window
are counted (``outside``), not delivered. Each object's kept records go to any backend URL; into
Elasticsearch this is idempotent: the document id is the record's ``log.record.uid``, so a replayed
record that is already indexed is recognised as a duplicate, not indexed twice.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import OutcomeKind
from otel_ext.backends.s3 import S3Backend, decode_object, partition_time
from otel_ext.backends.urls import BackendConfigError, backend_from_url

DEFAULT_RETENTION_DAYS = {"security": 365, "error": 90, "access": 30, "performance": 14, "application": 7}
RULE_PREFIX = "otel-ext-"
DEFAULT_SLACK = dt.timedelta(hours=24)


def s3_backend(url: str, source: str) -> S3Backend:
    backend = backend_from_url(url, source=source, default_timeout=30.0, plugins=("s3",))
    assert isinstance(backend, S3Backend)  # the plug-in named s3 builds S3Backend
    return backend


def parse_retention(text: str | None) -> dict[str, int]:
    from otel_ext.backends.elasticsearch.setup import parse_retention as parse

    return parse(text)


def _rule(backend: S3Backend, event_class: str, days: int) -> dict[str, Any]:
    return {"ID": f"{RULE_PREFIX}{event_class}", "Status": "Enabled",
            "Filter": {"Prefix": backend.config.base(event_class) + "/"},
            "Expiration": {"Days": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}


def _normal(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of a rule we set, in a form that compares equal across servers' echoes."""
    filt = rule.get("Filter") or {}
    prefix = filt.get("Prefix", rule.get("Prefix", ""))
    return (rule.get("ID"), rule.get("Status"), prefix, (rule.get("Expiration") or {}).get("Days"),
            (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"))


def setup(backend: S3Backend, retention: Mapping[str, int]) -> tuple[list[str], bool]:
    """Install the per-class lifecycle rules. Returns (lines to print, ok)."""
    from botocore.exceptions import ClientError

    client, bucket = backend._c(), backend.config.bucket
    lines: list[str] = []
    try:
        current = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            return [f"cannot read the lifecycle configuration of {bucket}: {exc}"], False
        current = []
    by_id = {r.get("ID"): r for r in current}
    foreign = [r for r in current if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
    wanted = [_rule(backend, c, d) for c, d in sorted(retention.items(), key=lambda kv: -kv[1])]
    changed = False
    for rule in wanted:
        old = by_id.get(rule["ID"])
        days, prefix = rule["Expiration"]["Days"], rule["Filter"]["Prefix"]
        if old is None:
            lines.append(f"created rule {rule['ID']}: s3://{bucket}/{prefix}* expires after {days} d")
            changed = True
        elif _normal(old) != _normal(rule):
            was = (old.get("Expiration") or {}).get("Days")
            lines.append(f"updated rule {rule['ID']}: s3://{bucket}/{prefix}* expires after {days} d (was {was} d)")
            changed = True
        else:
            lines.append(f"unchanged rule {rule['ID']}: s3://{bucket}/{prefix}* expires after {days} d")
    ours = {r["ID"] for r in wanted}
    stale = [r for r in current if str(r.get("ID", "")).startswith(RULE_PREFIX) and r.get("ID") not in ours]
    for rule in stale:
        lines.append(f"kept rule {rule['ID']} (a class not in --retention; delete it by hand if unwanted)")
    if foreign:
        lines.append(f"kept {len(foreign)} rule(s) not managed by otel-ext: "
                     f"{', '.join(str(r.get('ID', '?')) for r in foreign)}")
    if not changed:
        lines.append("lifecycle configuration already up to date: nothing written")
        return lines, True
    try:
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [*foreign, *stale, *wanted]})
    except ClientError as exc:
        return [*lines, f"FAILED to write the lifecycle configuration: {exc}"], False
    lines.append(f"wrote {len(wanted)} otel-ext rule(s) to s3://{bucket}")
    return lines, True


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``2h``, ``7d``, ``90s`` (or ``0``)."""
    match = _RELATIVE.match(text)
    if not match:
        if text.strip() == "0":
            return dt.timedelta(0)
        raise ValueError(f"not a duration: {text!r} (use 30m, 2h or 7d)")
    return dt.timedelta(seconds=int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-11-26``, ``2026-11-26T16:00[:00][Z|+01:00]`` (UTC if no zone), or ``30m``/``2h``/``7d`` ago."""
    now = now or dt.datetime.now(dt.timezone.utc)
    match = _RELATIVE.match(text)
    if match:
        seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return now - dt.timedelta(seconds=seconds)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2026-11-26T16:00Z or 2h/30m/7d ago)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


@dataclass
class ReplayResult:
    objects: int = 0
    records: int = 0
    failed: list[str] = field(default_factory=list)  # keys not delivered (with the reason)
    rejected: int = 0  # records the target refused for good (dead-letter worthy), reported
    outside: int = 0  # records read from widened partitions whose own time is outside [since, until]


def record_time(record: Any) -> int:
    """A record's own time in ns: ``time_unix_nano``, else ``observed_time_unix_nano`` (0: none)."""
    return int(record.time_unix_nano or record.observed_time_unix_nano)


def within(request: ExportLogsServiceRequest, since: dt.datetime | None, until: dt.datetime | None,
           written: dt.datetime | None) -> tuple[int, int]:
    """Keep only the records of ``request`` whose own time lies in ``[since, until]`` (in place;
    emptied scopes and resources are removed). A record without any time is judged by ``written``,
    its object's partition. Returns (records kept, records removed)."""
    lo = None if since is None else int(since.timestamp() * 1e9)
    hi = None if until is None else int(until.timestamp() * 1e9)
    fallback = None if written is None else int(written.timestamp() * 1e9)

    def inside(ns: int) -> bool:
        return (lo is None or ns >= lo) and (hi is None or ns <= hi)

    kept = removed = 0
    for rl in list(request.resource_logs):
        for sl in list(rl.scope_logs):
            records = sl.log_records
            for i in range(len(records) - 1, -1, -1):
                ns = record_time(records[i]) or fallback
                if ns is not None and not inside(ns):
                    del records[i]
                    removed += 1
            kept += len(records)
            if not records:
                rl.scope_logs.remove(sl)
        if not rl.scope_logs:
            request.resource_logs.remove(rl)
    return kept, removed


def replay(source: S3Backend, target: Backend, since: dt.datetime | None, until: dt.datetime | None,
           classes: list[str] | None = None, attempt_timeout: float = 60.0,
           progress: Callable[[str], None] | None = None, slack: dt.timedelta = DEFAULT_SLACK) -> ReplayResult:
    """Re-deliver the archived records whose own time lies in ``[since, until]`` to ``target``
    (objects searched: partitions widened by ``slack``, see the module docstring). Retryable and
    throttled outcomes are retried with back-off for up to ``attempt_timeout`` seconds per object;
    anything else is reported."""
    result = ReplayResult()
    wanted: list[str | None] = list(classes) if classes else [None]
    for event_class in wanted:
        for key in source.iter_keys(event_class, None if since is None else since - slack,
                                    None if until is None else until + slack):
            try:
                payload = decode_object(key, source.get(key))
                request = ExportLogsServiceRequest.FromString(payload)
            except Exception as exc:  # noqa: BLE001 - a foreign or damaged object: report it, go on
                result.objects += 1
                result.failed.append(f"{key}: unreadable: {type(exc).__name__}: {str(exc)[:200]}")
                if progress:
                    progress(f"{key}: FAILED unreadable ({type(exc).__name__})")
                continue
            count, outside = within(request, since, until, partition_time(key))
            result.outside += outside
            if outside:
                if not count:
                    continue  # read, but nothing of it happened in the window
                payload = request.SerializeToString()
            deadline = time.monotonic() + attempt_timeout
            delay = 0.2
            while True:
                outcome = target.send(payload, count)
                if outcome.delivered or outcome.kind not in (OutcomeKind.RETRYABLE, OutcomeKind.THROTTLED) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(outcome.retry_after or delay)
                delay = min(delay * 2, 5.0)
            result.objects += 1
            if outcome.delivered:
                result.records += count - outcome.rejected
                result.rejected += outcome.rejected
            else:
                result.failed.append(f"{key}: {outcome.kind.value}: {outcome.message}")
            if progress:
                when = partition_time(key)
                progress(f"{key} ({count} records, {when:%Y-%m-%d %H:%M} UTC): "
                         f"{'delivered' if outcome.delivered else 'FAILED ' + outcome.kind.value}")
    return result


def run_setup(url: str, retention_text: str | None, out: Callable[[str], None]) -> int:
    backend = s3_backend(url, "--backend")
    lines, ok = setup(backend, parse_retention(retention_text))
    out(f"{backend.describe()}:")
    for line in lines:
        out(f"  {line}")
    backend.close()
    return 0 if ok else 1


def run_replay(from_url: str, to_url: str, since: str | None, until: str | None, classes: list[str] | None,
               out: Callable[[str], None], slack: str | None = None) -> int:
    # the arguments first: nothing to close when one is wrong
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    if start and end and start > end:
        raise ValueError("--since is after --until")
    widen = DEFAULT_SLACK if slack is None else parse_duration(slack)
    source = s3_backend(from_url, "--from")
    try:
        target = backend_from_url(to_url, source="--to", default_timeout=30.0)
    except BackendConfigError:
        source.close()
        raise
    try:
        result = replay(source, target, start, end, classes, progress=out, slack=widen)
    finally:
        target.close()
        source.close()
    out(f"replayed {result.records} records from {result.objects} objects to {target.describe()}"
        + (f"; {result.rejected} refused for good by the target" if result.rejected else ""))
    if start or end:
        out(f"selected by each record's own time; objects written up to {widen} outside the window were "
            f"searched too, {result.outside} records in them were outside it (--slack widens the search)")
    for line in result.failed:
        out(f"NOT DELIVERED: {line}")
    return 1 if result.failed else 0
