"""The foundation issue's acceptance check at full size (slow: ~20 min on 2 cores).

Run with ``.venv/bin/python -m pytest -m slow tests/test_acceptance.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_default_demo_improves_on_bc_over_three_seeds(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "robopref.cli", "demo", "--multirun", "seed=0,1,2",
         "progress=false", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("metrics.json"))]
    assert len(runs) == 3
    gains = [r["refined_success_rate"] - r["bc_success_rate"] for r in runs]
    assert np.mean(gains) >= 0.10, gains
    assert all(r["labels"] <= 500 for r in runs)
    assert all(r["reward_accuracy"] >= 0.85 for r in runs), [r["reward_accuracy"] for r in runs]
