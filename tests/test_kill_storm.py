"""Kill -9 storms against a real rotel receiver: writer processes share one queue directory, each
is killed with SIGKILL at a random moment (while adopting its predecessors' files, or while
logging), then one drain. Nothing acknowledged is lost; duplicates stay within the at-least-once
window — the one coalesced request in flight on the lane of each killed process, at most
``OTEL_EXT_MAX_REQUEST_RECORDS`` records (or one export batch if larger) — not a share of the queue."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import storm

pytestmark = pytest.mark.peers

WRITERS = 8
# what one killed writer can have in flight: one request on its lane, coalesced up to this many
# records (the writers' export batches are at most 200 records, so no single entry is larger)
IN_FLIGHT_BOUND = 200
WRITER_BATCH = 200


@pytest.mark.parametrize(("backend_up", "body_bytes"), [(True, 0), (False, 0), (True, 400)],
                         ids=["up", "down", "up-segments"])
def test_kill_9_storm_loses_nothing_and_duplicates_stay_bounded(receivers: Any, tmp_path: Path,
                                                                backend_up: bool, body_bytes: int) -> None:
    """``body_bytes=400``: each 50-record entry is ~25 KB, so its payload lives in a segment file
    (written, adopted, deleted under the storm)."""
    from peers import Rotel

    rx: Rotel = receivers("storm")
    assert WRITER_BATCH <= IN_FLIGHT_BOUND  # else the bound is one batch, not the setting
    acked, _ = storm(tmp_path / "q", WRITERS, rx.grpc_url if backend_up else None, rx.grpc_url,
                     env={"OTEL_EXT_MAX_REQUEST_RECORDS": str(IN_FLIGHT_BOUND), "STORM_BODY_BYTES": str(body_bytes)})
    assert len(acked) > WRITERS * 50
    rx_seen = Counter(v for v in settled(rx, len(acked)) if v in acked)
    lost = acked - set(rx_seen)
    duplicates = sum(c - 1 for c in rx_seen.values())
    assert not lost, f"{len(lost)} acknowledged records lost"
    assert duplicates <= WRITERS * IN_FLIGHT_BOUND, duplicates  # one request per killed writer, at most
    # the issue saw 51 % of the queue delivered twice; a share of the acknowledged records depends on how
    # much a writer got to log before its kill (less on a loaded box), so the bound above is the real one
    assert duplicates <= 0.25 * len(acked), (duplicates, len(acked))
    assert list((tmp_path / "q").glob("q-*.db")) == []  # the drain proved everything delivered
    assert list((tmp_path / "q").glob("q-*.db.seg")) == []  # and their payload segments went with them


def settled(rx: Any, expected: int) -> list[str]:
    import time

    from peers import wait_until

    wait_until(lambda: len(set(rx.attribute_values("seq"))) >= expected, 30)
    last = -1
    while True:
        values: list[str] = rx.attribute_values("seq")
        if len(values) == last:
            return values
        last = len(values)
        time.sleep(0.2)
