"""The README's main job: ``autoscaler demo`` runs end to end and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def processes_with_env(marker: bytes) -> list[int]:
    """Pids whose environment contains ``marker`` (the demo's children inherit its TMPDIR)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def demo_tmpdir(tmp_path: Path):
    marker = f"TMPDIR={tmp_path}".encode()
    yield tmp_path
    for pid in processes_with_env(marker):  # only if the test failed half-way
        os.kill(pid, signal.SIGKILL)


def run_demo(tmpdir: Path, *args: str, stop_after: float | None = None) -> tuple[int, str]:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    command = [sys.executable, "-m", "autoscaler.cli", "demo", "--interval", "1", *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=stop_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        output, _ = process.communicate(timeout=120)
    return process.returncode, output.decode()


def test_demo_splits_the_pool_and_cleans_up(demo_tmpdir: Path):
    code, output = run_demo(demo_tmpdir, "--duration", "30")
    assert code == 0, output
    # alpha is alone at first: it gets the whole pool of 4 workers, and they start
    rows = re.findall(r"^  alpha +busy +(\d+) +(\d+) +(\d+) ", output, re.MULTILINE)
    assert ("4", "4") in {(allocated, current) for _, allocated, current in rows}, output
    # then beta arrives (at 15 s) and gets a fair share
    beta = re.findall(r"^  beta +busy +\d+ +(\d+) ", output, re.MULTILINE)
    assert "2" in beta, output
    assert "done: no process left behind." in output
    assert processes_with_env(f"TMPDIR={demo_tmpdir}".encode()) == []
    assert list(demo_tmpdir.iterdir()) == []  # its temporary folder is gone


def test_ctrl_c_stops_the_demo_cleanly(demo_tmpdir: Path):
    code, output = run_demo(demo_tmpdir, "--duration", "600", stop_after=15)
    assert code == 0, output
    assert "done: no process left behind." in output
    assert processes_with_env(f"TMPDIR={demo_tmpdir}".encode()) == []
