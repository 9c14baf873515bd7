"""`make test`/`make run` install the audio renderer with apt: set-up must survive a concurrent apt."""

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_system_deps_waits_for_the_dpkg_lock(tmp_path):
    # A PATH with no fluidsynth, root, and an apt-get that records how it was called.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    _fake(bin_dir, "id", "echo 0")
    _fake(bin_dir, "apt-get", f'echo "$*" >> {calls}')
    result = subprocess.run(
        [shutil.which("make"), "-s", "--no-print-directory", "system-deps"],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and "update" in lines[0] and "install" in lines[1], lines
    for line in lines:
        assert line.startswith("-o DPkg::Lock::Timeout=300 "), f"apt-get {line} would fail at once on a held lock"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_browser_deps_installs_chromium_with_apt_waiting_for_the_lock(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    _fake(bin_dir, "id", "echo 0")
    _fake(bin_dir, "apt-get", f'echo "$*" >> {calls}')
    result = subprocess.run(
        [shutil.which("make"), "-s", "--no-print-directory", "browser-deps"],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "REFRAIN_CHROMIUM": str(tmp_path / "no-chromium")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and "update" in lines[0] and lines[1].endswith(" chromium"), lines
    assert all(line.startswith("-o DPkg::Lock::Timeout=300 ") for line in lines)
