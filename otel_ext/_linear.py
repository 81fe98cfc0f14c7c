"""Linear-time matching for user-supplied patterns (rule regexes, extra redaction patterns).

Patterns are compiled with RE2 (``google-re2``), the engine family of the collector's OTTL (Go
``regexp``): matching time is linear in the input, whatever the pattern, so no rule and no input can
stall the app thread or the export worker. Patterns RE2 rejects (backreferences, look-around,
possessive quantifiers, ...) raise :class:`PatternError` at load time.

Inputs are bounded too: a value is scanned up to :data:`MAX_SCAN_CHARS` characters (the rest of a
multi-megabyte body is not searched by classification rules); see :func:`scan_text`.
"""

from __future__ import annotations

import re
from typing import Any

import re2

MAX_SCAN_CHARS = 64 * 1024
"""Classification rules read at most this many characters of any one value."""

_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)
_SURROGATE = re.compile("[\ud800-\udfff]")


class PatternError(ValueError):
    """RE2 cannot compile the pattern (the message says why)."""


def _options(case_insensitive: bool = False) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern to stderr
    options.max_mem = 8 << 20
    if case_insensitive:
        options.case_sensitive = False
    return options


class LinearRegex:
    """One RE2-compiled pattern; :meth:`search` answers "does it occur?" on a ``str``."""

    __slots__ = ("_raw", "compiled", "pattern")

    def __init__(self, pattern: str, case_insensitive: bool = False) -> None:
        try:
            self.compiled = re2.compile(pattern, _options(case_insensitive))
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise PatternError(f"not a linear-time (RE2) pattern: {reason}") from None
        self.pattern = pattern
        self._raw = self.compiled._regexp  # the C++ RE2 object: a boolean answer without match objects

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._raw.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)

    def sub(self, repl: str, text: str) -> tuple[str, int]:
        """Replace every match by ``repl`` (a literal); returns (text, count)."""
        if not self.search(text):
            return text, 0
        if _SURROGATE.search(text) is not None:  # the wrapper encodes strictly; repair as the encoder will
            text = _SURROGATE.sub("\ufffd", text)
        out: list[str] = []
        last = 0
        count = 0
        for match in self.compiled.finditer(text):
            start, end = match.span()
            if end == start:
                continue
            out.append(text[last:start])
            out.append(repl)
            last = end
            count += 1
        out.append(text[last:])
        return "".join(out), count


def scan_text(value: Any) -> str:
    """``value`` as text for a rule to read, cut at :data:`MAX_SCAN_CHARS` (the per-record work bound)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_SCAN_CHARS else text[:MAX_SCAN_CHARS]
