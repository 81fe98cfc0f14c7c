"""``name=value,name=value`` lists, the shape of several otel-ext settings (OTEL_EXT_SAMPLE,
OTEL_EXT_MIN_SEVERITY, OTEL_EXT_DETECTORS, ``--retention``)."""

from __future__ import annotations


def split_pairs(text: str | None, expected: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` items of ``text`` as written (each item stripped, empty items skipped);
    an item without ``=`` raises ``ValueError(f"{expected}, got {item!r}")``."""
    pairs: list[tuple[str, str]] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{expected}, got {item!r}")
        pairs.append((name, value))
    return pairs
