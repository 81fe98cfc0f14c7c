"""The README's main job and the examples run end to end (real subprocesses, real receivers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.peers
def test_demo_fails_over_and_reports_lost_zero(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--requests", "160", "--workdir",
                          str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict((line[:28].strip(), line[28:].strip())
                 for line in run.stdout.splitlines() if len(line) > 28)
    assert lines["lost"] == "0"
    assert lines["failovers"].startswith("1 ")
    assert "secondary 0" not in lines["delivered per backend"]
    report = Path(lines["report"])  # the demo ends with the report page, and keeps it
    assert report.is_file() and "Plotly.newPlot" in report.read_text()
    assert lines["pricing tiers (tenants)"].startswith("Starter ")


def test_demo_embedded_default_without_backends(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--no-backends", "--requests", "60",
                          "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "lost 0" in run.stdout
    report = Path(run.stdout.split("report", 1)[1].split()[0])
    assert report.is_file() and "data-k=\"records\"" in report.read_text()  # kept after the demo exits


def test_label_events_example_prints_labels() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "label_events.py"), "--rules",
                          str(ROOT / "examples" / "rules.yaml")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "authn_login_fail" in run.stdout and "excess_rate_limit_exceeded" in run.stdout
    assert "hunter2" not in run.stdout
