"""Nothing is stranded: an app SIGKILLed after its records were acknowledged to disk has them
delivered by the next process or by ``otel-ext queue drain``; forked workers each deliver
everything, and a killed worker's queue is adopted by a live process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from exporter_harness import make_app, queued_records
from peers import collect

pytestmark = pytest.mark.peers
ROOT = str(Path(__file__).resolve().parents[1])

APP = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[3])
    sys.path.insert(0, sys.argv[3] + "/tests")
    from exporter_harness import make_app
    app = make_app([sys.argv[1]], __import__("pathlib").Path(sys.argv[2]))
    for _ in range(int(sys.argv[4])):
        app.emit(100)
    app.flush_to_queue()  # every record is now acknowledged by export(): committed on disk
    print("acked", app.emitted, flush=True)
    time.sleep(120)
""")


def start_app(url: str, queue_dir: Path, batches: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", APP, url, str(queue_dir), ROOT, str(batches)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["acked"], line
    return proc


def test_sigkilled_app_records_are_delivered_by_otel_ext_queue_drain(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx", start=False)  # down: nothing can leave the app
    queue_dir = tmp_path / "q"
    proc = start_app(rx.grpc_url, queue_dir, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert queued_records(queue_dir) == 3000
    status = subprocess.run([sys.executable, "-m", "otel_ext.cli", "queue", "status", "--queue-dir", str(queue_dir)],
                            capture_output=True, text=True, timeout=60)
    assert "orphan" in status.stdout and "total pending records: 3000" in status.stdout
    rx.start()
    drain = subprocess.run([sys.executable, "-m", "otel_ext.cli", "queue", "drain", "--queue-dir", str(queue_dir),
                            "--backends", rx.grpc_url, "--timeout", "60"], capture_output=True, text=True, timeout=120)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert "delivered 3000 records" in drain.stdout
    uids = collect(3000, rx)
    assert len(set(uids)) == 3000 and len(uids) == 3000
    assert queued_records(queue_dir) == 0


def test_sigkilled_app_records_are_adopted_by_the_next_process(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx", start=False)
    queue_dir = tmp_path / "q"
    proc = start_app(rx.grpc_url, queue_dir, 20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    rx.start()
    app = make_app([rx.grpc_url], queue_dir)  # the restarted service
    app.emit(500)
    assert app.deliver(30)
    app.close()
    assert len(set(collect(2500, rx))) == 2500


PREFORK = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[3])
    sys.path.insert(0, sys.argv[3] + "/tests")
    from pathlib import Path
    from exporter_harness import make_app, queued_records
    queue_dir = Path(sys.argv[2])
    # preload style: the pipeline is built in the parent before forking, like gunicorn --preload
    parent = make_app([sys.argv[1]], queue_dir, shutdown_timeout=0.5)
    parent.emit(100)
    parent.flush_to_queue()
    workers = []
    for worker in range(3):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(read_fd)
                parent.emitted = 10_000 * (worker + 1)  # distinct seq ranges per worker
                parent.emit(1000)
                parent.flush_to_queue()
                os.write(write_fd, b"acked\\n")
                if worker == 2:
                    time.sleep(120)  # will be SIGKILLed
                parent.close()  # graceful: bounded shutdown, undelivered records stay queued
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            assert pipe.readline().strip() == "acked"
        workers.append(pid)
    os.kill(workers[2], signal.SIGKILL)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in workers]
    print("queued", queued_records(queue_dir), *codes, flush=True)
    sys.stdin.readline()  # the test starts the receiver now
    parent.exporter.adopt_orphans()  # also runs every few seconds in the background
    delivered = parent.deliver(60)
    parent.close()
    print("delivered", int(delivered), flush=True)
""")


def test_forked_workers_each_deliver_and_a_killed_workers_queue_is_adopted(receivers: Any, tmp_path: Path) -> None:
    """Forking happens in a fresh app process (not in pytest's own process, which after hundreds of
    tests holds many gRPC channels and threads: forking that is not what an app does)."""
    rx = receivers("rx", start=False)
    queue_dir = tmp_path / "q"
    proc = subprocess.Popen([sys.executable, "-c", PREFORK, rx.grpc_url, str(queue_dir), ROOT],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        line = proc.stdout.readline().split()
        # 3 workers x 1000 + the parent's own 100; workers 0 and 1 exited 0, worker 2 was SIGKILLed
        assert line == ["queued", "3100", "0", "0", str(-signal.SIGKILL)], (line, proc.poll())
        rx.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["delivered", "1"], proc.poll()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    uids = collect(3100, rx)
    assert len(set(uids)) == 3100
    assert len(uids) == 3100
