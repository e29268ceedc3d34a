"""The README's results at full size (slow: ~45 min on 2 cores).

Runs the default ``make demo`` config on seeds 5-9 (the reported seeds; settings were chosen
on seeds 0-2) and checks what the README claims: test-split success over 100 unseen goal
variations improves on BC on average over the five seeds, with the 95% t-interval of the mean
gain above zero, within 500 labels a seed.

Run with ``.venv/bin/python -m pytest -m slow tests/test_acceptance.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from robopref.loop import mean_interval


@pytest.mark.slow
def test_default_demo_improves_test_split_success_over_bc_on_the_reported_seeds(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "robopref.cli", "demo", "--multirun", "seed=5,6,7,8,9",
         "progress=false", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("metrics.json"))]
    assert len(runs) == 5 and all(r["test_episodes"] == 100 for r in runs)
    mean, low, _ = mean_interval([r["test_improvement"] for r in runs])
    assert low > 0, [r["test_improvement"] for r in runs]
    assert all(r["labels"] <= 500 for r in runs)
    assert all(r["reward_accuracy"] >= 0.85 for r in runs), [r["reward_accuracy"] for r in runs]
