"""Turning an SDK batch into queue entries: assign ``log.record.uid`` where missing, split by drop
tier (so overflow can drop access before error before security), encode each part as an OTLP
``ExportLogsServiceRequest`` with the SDK's own encoder."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord

from otel_ext._attrs import read_view, set_many
from otel_ext.queue.store import TIER_BY_CLASS, NewEntry

UID_ATTR = "log.record.uid"
_CLASS_ATTR = "labels.event_class"


class UidFactory:
    """Unique record ids: a random per-process prefix (renewed after fork) plus a counter."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"  # itertools.count is atomic under the GIL


new_uid = UidFactory()


def encode_batch(batch: Sequence[ReadableLogRecord]) -> list[NewEntry]:
    """Queue entries for ``batch``: one per drop tier present, uids assigned in place."""
    groups: dict[int, list[ReadableLogRecord]] = {}
    classes: dict[int, dict[str, int]] = {}
    for item in batch:
        record = item.log_record
        attrs = read_view(record.attributes)
        if UID_ATTR not in attrs:
            set_many(record, {UID_ATTR: new_uid()})
        event_class = attrs.get(_CLASS_ATTR) if attrs else None
        if not isinstance(event_class, str) or event_class not in TIER_BY_CLASS:
            event_class = "application"
        tier = TIER_BY_CLASS[event_class]
        groups.setdefault(tier, []).append(item)
        per_class = classes.setdefault(tier, {})
        per_class[event_class] = per_class.get(event_class, 0) + 1
    return [
        NewEntry(tier, len(items), classes[tier], encode_logs(items).SerializeToString())
        for tier, items in sorted(groups.items())
    ]
