"""The set-up the Makefile does: every script it runs by path can be executed on a fresh clone."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scripts_the_makefile_runs_are_executable():
    called = set(re.findall(r"^\t(scripts/\S+\.sh)\b", (ROOT / "Makefile").read_text(), re.M))
    assert {"scripts/install_system_deps.sh", "scripts/install_baseline.sh"} <= called
    for script in sorted(called):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
