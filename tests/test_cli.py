"""The otel-ext command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_ext.cli", *args], capture_output=True, text=True, timeout=60)


def test_rules_lists_builtins_and_user_rules() -> None:
    out = run("rules", "--rules", str(ROOT / "examples" / "rules.yaml"))
    assert out.returncode == 0, out.stderr
    assert "http.login.fail" in out.stdout and "payments.declined" in out.stdout
    assert "slow_routes={'/api/reports/*': 5000.0" in out.stdout


def test_check_rules_reports_bad_file_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: r1\n    when: {status: 401}\n    class: nope\n")
    out = run("check-rules", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "rule 'r1'" in out.stderr and "Traceback" not in out.stderr
    good = run("check-rules", str(ROOT / "examples" / "rules.yaml"))
    assert good.returncode == 0 and "brute_force_account" in good.stdout
    bad.write_text("detectors:\n  brute_force_account: {threshold: lots}\n")
    out = run("check-rules", str(bad))
    assert out.returncode == 2 and "brute_force_account: threshold must be a positive number" in out.stderr
