"""The import contracts of pyproject.toml hold, and the check would catch a breach."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = ROOT / ".venv" / "bin" / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """The bare command, as a developer runs it from the checkout's root."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})


def test_feeds_and_daemon_meet_only_in_the_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_feed_importing_the_daemon_breaks_the_contract(tmp_path):
    for part in ("eowatch", "models", "daemon", "adapters"):
        # the links under eowatch/ stay links, to the copy's folders
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    tiles = tmp_path / "adapters" / "tiles.py"
    tiles.write_text(tiles.read_text() + "\nfrom eowatch.daemon.store.store import Store\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "Feeds import the contract, not the daemon BROKEN" in result.stdout
    assert "eowatch.adapters.tiles -> eowatch.daemon.store.store" in result.stdout
