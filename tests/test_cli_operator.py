"""The operator's CLI (Click + Rich), run as real subprocesses: --version; `otel-ext status` shows a
running process's backends and which one is active (from the status file it publishes) and an
orphan's depth after kill -9; tables fit an 80-column terminal (a real pty) and are plain text
when piped; --json everywhere parses; no traceback on a closed pipe (exit 141) or Ctrl-C (130);
`otel-ext report` writes the page from the file backend; hostile status files are ignored."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from peers import free_port, wait_until

from otel_ext.status import read_status, status_path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "otel_ext.cli"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COLUMNS", "LINES", "FORCE_COLOR",
                                                                 "TTY_"))}


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=ENV, **kwargs)


def run_in_terminal(*args: str, columns: int = 80) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal of ``columns`` columns; returns (exit code, output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([*CLI, *args], stdin=follower, stdout=follower, stderr=follower, env=ENV,
                            close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


APP = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[3] + "/tests")
    from pathlib import Path
    from exporter_harness import make_app
    app = make_app(sys.argv[1].split(","), Path(sys.argv[2]))  # the exporter publishes its status file itself
    app.emit(300)
    assert app.deliver(30)
    print("delivered", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def running_app(tmp_path: Path) -> Any:
    down = f"otlp+grpc://127.0.0.1:{free_port()}?name=primary"  # nothing listens: fails over
    backends = f"{down},file://{tmp_path / 'logs'}?name=archive"
    proc = subprocess.Popen([sys.executable, "-c", APP, backends, str(tmp_path / "q"), str(ROOT)],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "delivered"
    yield proc, tmp_path / "q"
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("otel-ext ") and out.stdout.split()[1][0].isdigit()


def test_status_shows_running_backends_then_the_orphan_after_kill(running_app: Any) -> None:
    proc, queue_dir = running_app
    (queue_dir / "quarantine").mkdir(mode=0o700)  # as adoption quarantines a damaged orphan
    (queue_dir / "quarantine" / "q-1-dead.db").write_bytes(b"junk")
    (queue_dir / "quarantine" / "q-1-dead.db.reason").write_text("bad header: not an SQLite file\n")

    def failed_over() -> bool:  # the exporter rewrites its status file every 5 s
        for path in queue_dir.glob("*.status.json"):
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                return False
            return any(b.get("active") and b.get("name") == "archive" for b in doc.get("backends", []))
        return False

    assert wait_until(failed_over, 20)
    out = run("status", "--queue-dir", str(queue_dir), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [queue] = doc["queues"]
    assert queue["state"] == "running" and queue["owner_pid"] == proc.pid
    assert doc["quarantine"] == [{"file": "q-1-dead.db", "reason": "bad header: not an SQLite file", "bytes": 4}]
    backends = {b["name"]: b for b in queue["backends"]}
    assert set(backends) == {"primary", "archive"}
    assert backends["archive"]["active"] and not backends["primary"]["active"]
    assert not backends["primary"]["up"] and backends["primary"]["last_error"]
    assert queue["records"] == 0 and queue["status_stale"] is False
    plain = run("status", "--queue-dir", str(queue_dir))  # piped: plain aligned text, no box drawing
    assert plain.returncode == 0
    assert "running" in plain.stdout and "primary (down)" in plain.stdout and "archive" in plain.stdout
    assert not any(ch in plain.stdout for ch in "│┃━─╇┏")
    code, screen = run_in_terminal("status", "--queue-dir", str(queue_dir), columns=80)
    assert code == 0 and "running" in screen and any(ch in screen for ch in "│┃━─")
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert max(len(line) for line in visible.splitlines()) <= 80, visible
    assert "running" in visible and "orphan" not in visible
    proc.kill()
    proc.wait(10)
    out = json.loads(run("status", "--queue-dir", str(queue_dir), "--json").stdout)
    [queue] = out["queues"]
    assert queue["state"] == "orphan" and "backends" not in queue  # a dead process's status file is not trusted
    assert out["total_pending_records"] == 0


def test_hostile_status_files_are_ignored(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text(json.dumps({"pid": 1, "backends": [{"name": "[red]x[/red]"}]}))
    link = tmp_path / "link.status.json"
    link.symlink_to(target)
    assert read_status(link) is None  # never follows a symlink
    big = tmp_path / "big.status.json"
    big.write_text(json.dumps({"pad": "x" * 100_000}))
    assert read_status(big) is None
    bad = tmp_path / "bad.status.json"
    bad.write_text("{not json")
    assert read_status(bad) is None
    assert status_path(tmp_path / "q-1-ab.db").name == "q-1-ab.status.json"


def test_closed_pipe_exits_141_without_a_traceback(tmp_path: Path) -> None:
    for args in (["rules"], ["rules", "--json"], ["status", "--queue-dir", str(tmp_path)]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        proc = subprocess.Popen([*CLI, *args], stdout=write_end, stderr=subprocess.PIPE, env=ENV)
        os.close(write_end)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert proc.wait(60) == 141, err
        assert "Traceback" not in err and err == ""


def test_ctrl_c_during_drain_exits_130_without_a_traceback(tmp_path: Path) -> None:
    from exporter_harness import make_app

    app = make_app([f"otlp+grpc://127.0.0.1:{free_port()}"], tmp_path / "q")
    app.emit(50)
    app.flush_to_queue()
    app.exporter.shutdown()
    app.close()
    proc = subprocess.Popen([*CLI, "queue", "drain", "--queue-dir", str(tmp_path / "q"), "--backends",
                             f"otlp+grpc://127.0.0.1:{free_port()}", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted" in err


def test_usage_errors_exit_2_with_the_command_name() -> None:
    out = run("queue", "bogus")
    assert out.returncode == 2 and "otel-ext queue" in out.stderr and "Traceback" not in out.stderr
    assert "queue_command" not in out.stderr
    out = run("queue", "purge", "--queue-dir", "/nonexistent")
    assert out.returncode == 2 and "--yes" in out.stderr


def test_report_from_the_file_backend(tmp_path: Path) -> None:
    from exporter_harness import make_app

    app = make_app([f"file://{tmp_path / 'logs'}"], tmp_path / "q")
    logger = app.provider.get_logger("shop.api")
    for i in range(40):
        logger.emit(body="GET /api/orders", attributes={
            "http.request.method": "GET", "http.route": "/api/orders", "http.response.status_code": 200 if i % 4 else 503,
            "tenant.id": f"t{i % 3}", "http.server.request.duration": 0.01 * (i + 1), "labels.event_class": "access"})
    assert app.deliver(30)
    app.close()
    out = run("report", "--backend", f"file://{tmp_path / 'logs'}", "--out", str(tmp_path / "r.html"), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["records"] == 40 and doc["clients"] == {"t0": 14, "t1": 13, "t2": 13}
    assert sorted(c for t in doc["tiers"] for c in t["clients"]) == ["t0", "t1", "t2"]
    html = (tmp_path / "r.html").read_text()
    assert "Plotly.newPlot" in html and 'data-k="route.errors|/api/orders">10<' in html
    out = run("report", "--backend", f"file://{tmp_path / 'nope'}", "--out", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "does not exist" in out.stderr
