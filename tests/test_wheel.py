"""The built wheel, installed into a fresh virtual environment, starts the daemon: what the
Dockerfile's image runs (base-image registries cannot be reached here to build the image)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from .conftest import free_port
from .test_daemon.test_service import get, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_dockerfile_installs_and_starts_what_this_test_does():
    """The image builds the wheel and installs it into one virtual environment, and runs
    `eowatch run`: the steps the next test takes."""
    import re

    text = (ROOT / "Dockerfile").read_text()
    assert "python -m venv /opt/eowatch" in text
    assert re.search(r"pip wheel --no-cache-dir --no-deps -w /wheels \.", text)
    assert re.search(r"pip install --no-cache-dir /wheels/eowatch-\*\.whl", text)
    assert 'ENTRYPOINT ["eowatch"]' in text and 'CMD ["run"]' in text


def test_the_wheel_runs_the_bundled_model_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("eowatch-*.whl"))
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # the dependencies come from this environment's site-packages (a plain path: its .pth
    # files, among them this checkout's editable install, are not read)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update({"EOWATCH_DATA_DIR": str(tmp_path / "var"),
                        "EOWATCH_API_PORT": str(port), "EOWATCH_SIM_PARCELS": "50",
                        "EOWATCH_SIM_DAYS_PER_SECOND": "200"})
    with open(tmp_path / "daemon.log", "w") as log:
        process = subprocess.Popen([env_dir / "bin" / "eowatch", "run"], cwd=tmp_path,
                                   env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        body = wait_for(lambda: (get(port, "/decisions?limit=1") or {}).get("total"), 120,
                        process)
        assert body > 0
        location = subprocess.run([python, "-c", "import eowatch.models, eowatch.settings as s;"
                                   "print(eowatch.models.__file__, s.DEFAULT_MODEL)"],
                                  capture_output=True, text=True, check=True, cwd=tmp_path,
                                  env=environment).stdout
        assert str(ROOT) not in location and str(site) in location
    finally:
        stop(process)
