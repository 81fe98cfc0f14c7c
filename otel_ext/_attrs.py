"""Fast, limit-respecting access to a log record's attributes (shared by our processors).

The SDK stores attributes in ``BoundedAttributes``, whose per-item accessors take a lock and
re-validate values; our processors read and write many keys per record, so they go to the
underlying dict while still honouring the attribute-count limit.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.util.types import AnyValue

_EMPTY: dict[str, AnyValue] = {}


def read_view(attributes: Any) -> MutableMapping[str, AnyValue] | dict[str, AnyValue]:
    """A plain mapping over the record's attributes (never None)."""
    if attributes is None:
        return _EMPTY
    if isinstance(attributes, BoundedAttributes):
        return attributes._dict
    return attributes  # type: ignore[no-any-return]


def ensure_writable(log_record: Any) -> MutableMapping[str, AnyValue]:
    """The record's attribute mapping, created (bounded by the default limits) when absent."""
    attributes = log_record.attributes
    if attributes is None:
        limits = LogRecordLimits()
        attributes = BoundedAttributes(
            maxlen=limits.max_log_record_attributes,
            immutable=False,
            max_value_len=limits.max_log_record_attribute_length,
            extended_attributes=True,
        )
        log_record.attributes = attributes
    return attributes  # type: ignore[no-any-return]


def set_many(log_record: Any, values: dict[str, AnyValue]) -> None:
    """Set several attributes; values must already be valid attribute values."""
    attributes = ensure_writable(log_record)
    if isinstance(attributes, BoundedAttributes):
        raw = attributes._dict
        maxlen = attributes.maxlen
        if maxlen is None or len(raw) + len(values) <= maxlen:  # room for all: one update
            raw.update(values)
            return
        for key, value in values.items():
            if maxlen is None or key in raw or len(raw) < maxlen:
                raw[key] = value
            else:
                attributes[key] = value  # let the SDK count the drop
    else:
        attributes.update(values)
