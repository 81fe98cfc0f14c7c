"""PersistentQueue (durable store, dead-letter store) and queue-file ownership."""

from otel_ext.queue.ownership import claim_new, list_queue_files, orphans, prepare_dir
from otel_ext.queue.store import QUEUE_COUNTERS, PersistentQueue, QueueError, QueueStats, read_stats

__all__ = [
    "QUEUE_COUNTERS",
    "PersistentQueue",
    "QueueError",
    "QueueStats",
    "claim_new",
    "list_queue_files",
    "orphans",
    "prepare_dir",
    "read_stats",
]
