"""Redaction internals: key-name judgement (:mod:`.keys`) and free-text detectors (:mod:`.detectors`)."""
