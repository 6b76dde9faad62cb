"""The import contracts of pyproject.toml hold, and the check would catch a breach."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ".ci/lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(root / SCRIPT)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(ROOT / ".venv/bin/python")})


def test_feeds_and_daemon_meet_only_in_the_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_feed_importing_the_daemon_breaks_the_contract(tmp_path):
    for part in ("eowatch", "models", "daemon", "adapters", ".ci"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    tiles = tmp_path / "adapters" / "tiles.py"
    tiles.write_text(tiles.read_text() + "\nfrom eowatch.daemon.store.store import Store\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "Feeds import the contract, not the daemon BROKEN" in result.stdout
    assert "eowatch.adapters.tiles -> eowatch.daemon.store.store" in result.stdout
