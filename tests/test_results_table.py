"""The committed results table is what the committed per-run summaries generate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "scripts" / "results_table.py"
    spec = importlib.util.spec_from_file_location("results_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendering_the_committed_summaries_reproduces_the_committed_tables(tmp_path, monkeypatch):
    script = load_script()
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    monkeypatch.setattr(script, "TABLE", tmp_path / "demo.md")
    monkeypatch.setattr(script, "README", readme)
    script.render()
    assert (tmp_path / "demo.md").read_text() == (ROOT / "docs/results/demo.md").read_text()
    assert readme.read_text() == (ROOT / "README.md").read_text()
    assert "mean over 5 seeds" in readme.read_text()
