"""Benchmark: the S3 archive backend's upload rate (S3Backend.send() of the sender's coalesced queue
payloads: split by class, OTLP JSON written from the wire format, gzip, PUT) against a plain boto3
``put_object`` loop uploading the very same objects (read back from our bucket), same server, same
run, paired rounds. Both in MB/s of stored (compressed) object bytes and records/s; the rate of OTLP
protobuf payload bytes archived is printed too, and how much of our time the encoding alone takes
(split by class + OTLP JSON + gzip of the same requests, no network).
Server: SeaweedFS (tests/s3_server.py; moto if SeaweedFS cannot be built, and the line says so).

    python benchmarks/bench_s3.py [--records 20000] [--rounds 4] [--format json|proto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kafka import batches
from s3_server import S3Server

from otel_ext.backends import backend_from_url
from otel_ext.backends.s3 import encode_object, split_by_class
from otel_ext.export.encoding import encode_batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--format", choices=["json", "proto"], default="json", help="the backend's format= key")
    args = parser.parse_args()
    os.environ.update(S3Server.credentials_env())
    server = S3Server().start()
    client: Any = server.client()
    ours: list[float] = []
    plain: list[float] = []
    ratios: list[float] = []
    raw_rates: list[float] = []
    seconds_ours: list[float] = []
    encode_share: list[float] = []
    try:
        def run_ours(n: int) -> tuple[float, list[tuple[str, bytes]]]:
            bucket = f"ours-{uuid.uuid4().hex[:8]}"
            server.create_bucket(bucket)
            payloads = [e.payload for batch in batches(n) for e in encode_batch(batch)]
            requests = [b"".join(payloads[i:i + 19]) for i in range(0, len(payloads), 19)]
            url = server.url(bucket, "bench", timeout="30s", format=args.format)
            backend = backend_from_url(url, env=dict(os.environ))
            assert backend.probe().delivered
            t0 = time.perf_counter()
            for payload in requests:
                assert backend.send(payload, 0).delivered
            seconds = time.perf_counter() - t0
            seconds_ours.append(seconds)
            backend.close()
            t1 = time.perf_counter()
            for payload in requests:
                for part, _ in split_by_class(payload).values():
                    encode_object(part, args.format, "gzip")
            encode_share.append((time.perf_counter() - t1) / seconds)
            objects = [(o["Key"], client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
                       for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
            raw_rates.append(sum(map(len, requests)) / seconds / 1e6)
            return sum(len(body) for _, body in objects) / seconds / 1e6, objects

        def run_plain(objects: list[tuple[str, bytes]]) -> float:
            bucket = f"plain-{uuid.uuid4().hex[:8]}"
            server.create_bucket(bucket)
            client.head_bucket(Bucket=bucket)
            t0 = time.perf_counter()
            for key, body in objects:
                client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
            return sum(len(body) for _, body in objects) / (time.perf_counter() - t0) / 1e6

        _, warm = run_ours(5_000)
        run_plain(warm)
        raw_rates.clear()
        seconds_ours.clear()
        encode_share.clear()
        last = warm
        for r in range(args.rounds):
            if r % 2 == 0:
                rate, last = run_ours(args.records)
                anchor = run_plain(last)
            else:
                anchor = run_plain(last)
                rate, last = run_ours(args.records)
            ours.append(rate)
            plain.append(anchor)
            ratios.append(rate / anchor)
    finally:
        server.stop()
    print(f"S3 ({server.kind}{' — an emulator, not a real S3 implementation' if server.kind == 'moto' else ''}), "
          f"{args.records} records x {args.rounds} paired rounds, medians: S3Backend format={args.format} "
          f"{statistics.median(ours):.2f} MB/s of gzip objects (encoding included; "
          f"{statistics.median(raw_rates):.2f} MB/s of OTLP protobuf payload archived, "
          f"{args.records / statistics.median(seconds_ours):,.0f} records/s); plain boto3 put_object loop "
          f"of the same objects {statistics.median(plain):.2f} MB/s; ratio {statistics.median(ratios):.2f}; "
          f"encoding alone (split by class, {args.format}, gzip) is {statistics.median(encode_share):.0%} of our time")


if __name__ == "__main__":
    main()
