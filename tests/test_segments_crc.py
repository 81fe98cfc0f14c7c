"""The two kinds of payload frame: ``OXS1`` (zlib CRC-32, written without ``google-crc32c``) and
``OXS2`` (CRC-32C, written with it). Every reader verifies both, with or without the library; a
queue written by either writer, or by both in turn, is read back whole; a flipped bit in either kind
is damage (a dead letter with its reason), never a wrong payload. Real files only."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import google_crc32c
import pytest
from durable_helpers import entry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_ext.queue import segments
from otel_ext.queue.store import NewEntry, PersistentQueue
from otel_ext.telemetry import Counters

KINDS = (segments.MAGIC, segments.MAGIC_C)


def big(seqs: list[int]) -> NewEntry:
    e = entry(seqs, "access", body_bytes=2000)
    assert len(e.payload) > segments.INLINE_MAX
    return e


def test_the_writer_uses_crc32c_frames_when_the_compiled_library_is_there() -> None:
    assert google_crc32c.implementation == "c"  # the test environment installs otel-ext[crc32c]
    assert segments.HAVE_FAST_CRC32C and segments.WRITE_MAGIC == segments.MAGIC_C


def test_software_crc32c_matches_the_library_and_the_standard_check_value() -> None:
    assert segments.crc32c_soft(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    for data in (b"", b"\x00", bytes(range(256)) * 9, os.urandom(70_001)):
        assert segments.crc32c_soft(data) == google_crc32c.value(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=6),
       kinds=st.lists(st.sampled_from(KINDS), min_size=6, max_size=6),
       flip=st.integers(min_value=0), soft=st.booleans())
def test_both_frame_kinds_read_back_exactly_and_any_flipped_bit_is_damage(
        tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], kinds: list[bytes], flip: int,
        soft: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of either kind, mixed in one segment, are read back byte for byte (with the library
    or the pure-Python CRC-32C); a bit flipped anywhere in one frame makes that frame, and only it,
    fail its checks."""
    if soft:  # a reader without google-crc32c
        monkeypatch.setitem(segments.CHECKSUMS, segments.MAGIC_C, segments.crc32c_soft)
    db = tmp_path_factory.mktemp("crc") / "q.db"
    writer = segments.Segments(db, fsync=False)
    places = []
    for payload, kind in zip(payloads, kinds, strict=False):
        writer.magic = kind
        places += writer.write([payload])
    writer.close()
    reader = segments.Segments(db, fsync=False)
    fds = {n: reader.open_for_read(n) for n, _ in places}
    try:
        for payload, (number, offset) in zip(payloads, places, strict=True):
            assert segments.read_frame(fds[number], number, offset, len(payload)) == payload
        # flip one bit of one frame (header or payload)
        victim = flip % len(payloads)
        number, offset = places[victim]
        span = segments.FRAME.size + len(payloads[victim])
        bit = (flip // len(payloads)) % (span * 8)
        path = segments.segment_dir(db) / f"{number:08d}"
        with path.open("r+b") as f:
            f.seek(offset + bit // 8)
            byte = f.read(1)[0]
            f.seek(offset + bit // 8)
            f.write(bytes([byte ^ (1 << (bit % 8))]))
        for i, (payload, (number, offset)) in enumerate(zip(payloads, places, strict=True)):
            if i == victim:
                with pytest.raises(segments.SegmentDamaged):
                    segments.read_frame(fds[number], number, offset, len(payload))
            else:
                assert segments.read_frame(fds[number], number, offset, len(payload)) == payload
    finally:
        for fd in fds.values():
            os.close(fd)
        reader.close()


@pytest.mark.parametrize("writer_kind", KINDS)
def test_a_queue_written_by_either_writer_is_read_whole_by_a_reader_with_or_without_the_library(
        tmp_path: Path, writer_kind: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the entries written by one writer kind, the other half after a restart by the other
    (an install or removal of google-crc32c between runs); then read by a process without it."""
    other = segments.MAGIC if writer_kind == segments.MAGIC_C else segments.MAGIC_C
    q = PersistentQueue(tmp_path / "q.db", counters=Counters("t"))
    q.register_lanes(["main"])
    q._segments.magic = writer_kind
    q.append([big(list(range(k * 20, k * 20 + 20))) for k in range(3)])
    q.close()
    q = PersistentQueue(tmp_path / "q.db", counters=Counters("t"))
    q._segments.magic = other
    q.append([big(list(range(k * 20, k * 20 + 20))) for k in range(3, 6)])
    q.close()
    kinds = set()
    for path in segments.segment_dir(tmp_path / "q.db").iterdir():
        data = path.read_bytes()
        kinds |= {data[i:i + 4] for i in range(0, len(data) - 3) if data[i:i + 4] in KINDS}
    assert kinds == set(KINDS)
    monkeypatch.setitem(segments.CHECKSUMS, segments.MAGIC_C, segments.crc32c_soft)  # no library
    q = PersistentQueue(tmp_path / "q.db", counters=Counters("t"))
    q._hot.clear()
    got = q.read_after(0, 10**6, 10**9)
    assert len(got) == 6 and not q.dead_letters()
    assert b"".join(e.payload for e in got) == b"".join(
        big(list(range(k * 20, k * 20 + 20))).payload for k in range(6))
    q.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_frame_of_either_kind_with_a_wrong_checksum_becomes_a_dead_letter_with_its_reason(
        tmp_path: Path, kind: bytes) -> None:
    q = PersistentQueue(tmp_path / "q.db", counters=Counters("t"))
    q.register_lanes(["main"])
    q._segments.magic = kind
    good, bad = big(list(range(20))), big(list(range(20, 40)))
    q.append([good, bad])
    q._hot.clear()
    (number,) = [int(p.name) for p in segments.segment_dir(tmp_path / "q.db").iterdir()]
    path = segments.segment_dir(tmp_path / "q.db") / f"{number:08d}"
    data = bytearray(path.read_bytes())
    second = segments.FRAME.size + len(good.payload)
    magic, length, crc = segments.FRAME.unpack_from(data, second)
    assert magic == kind and crc == segments.CHECKSUMS[kind](bad.payload)
    # the other kind's checksum of the same bytes: right bytes, wrong kind -> damage, not trust
    segments.FRAME.pack_into(data, second, kind, length,
                             zlib.crc32(bad.payload) if kind == segments.MAGIC_C else
                             google_crc32c.value(bad.payload))
    path.write_bytes(bytes(data))
    got = q.read_after(0, 10**6, 10**9)
    assert [e.payload for e in got] == [good.payload]
    (letter,) = q.dead_letters()
    assert "CRC mismatch" in letter.reason and letter.records == bad.records
    q.close()
