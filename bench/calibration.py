"""Calibrated confidence on the Mato Grosso data: a stratified 75/25 split by sample, `eowatch
train` on the 75 % (temperature fitted on its own validation split), `eowatch evaluate` on the
25 % it never saw: expected calibration error raw and calibrated, and the reliability diagram.

    python bench/calibration.py [--plots DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "matogrosso_mod13q1_7classes_1837.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plots", type=Path, default=Path("calibration-plots"))
    parser.add_argument("--alpha", default="0.7")
    args = parser.parse_args()
    frame = pd.read_parquet(DATA)
    rng = np.random.default_rng(0)
    held_out: list = []
    for _, group in frame.groupby("label"):
        ids = group["sample_id"].unique()
        rng.shuffle(ids)
        held_out += list(ids[: max(1, round(len(ids) * 0.25))])
    eowatch = [sys.executable, "-m", "eowatch.cli"]
    with tempfile.TemporaryDirectory() as folder:
        train, test = Path(folder) / "train.parquet", Path(folder) / "test.parquet"
        frame[~frame.sample_id.isin(held_out)].to_parquet(train)
        frame[frame.sample_id.isin(held_out)].to_parquet(test)
        model = Path(folder) / "model.pt"
        subprocess.run([*eowatch, "train", str(train), "--out", str(model), "--alpha",
                        args.alpha, "--no-progress"], check=True)
        subprocess.run([*eowatch, "evaluate", str(model), str(test), "--plots",
                        str(args.plots)], check=True)


if __name__ == "__main__":
    main()
