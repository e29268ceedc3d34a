"""The committed results table is what the committed per-run summaries generate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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


def load_transfer_script():
    path = ROOT / "scripts" / "transfer_table.py"
    spec = importlib.util.spec_from_file_location("transfer_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_transfer_table_is_what_its_summaries_render(tmp_path, monkeypatch):
    script = load_transfer_script()
    monkeypatch.setattr(script, "TABLE", tmp_path / "transfer.md")
    script.render()
    assert (tmp_path / "transfer.md").read_text() == \
        (ROOT / "docs/results/transfer.md").read_text()


def test_transfer_collect_keeps_what_is_there_and_skips_unfinished(tmp_path, monkeypatch):
    import json

    script = load_transfer_script()
    monkeypatch.setattr(script, "SUMMARIES", tmp_path / "summaries")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    runs = tmp_path / "runs"
    for seed, status in ((0, "finished"), (1, "running")):
        folder = runs / f"r{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(
            {"kind": "transfer", "status": status, "source": "a", "target": "b", "seed": seed,
             "refinement": None, "value": 1}))
    (runs / "r0" / "refine_oracle").mkdir()
    (runs / "r0" / "refine_oracle" / "metrics.json").write_text(json.dumps({"status": "x"}))
    script.collect([str(runs)])
    assert [p.name for p in (tmp_path / "summaries").iterdir()] == ["a_to_b_seed0.json"]
    (runs / "r0" / "metrics.json").write_text(json.dumps(
        {"kind": "transfer", "status": "finished", "source": "a", "target": "b", "seed": 0,
         "refinement": None, "value": 2}))
    script.collect([str(runs)])  # resumable: the committed summary is kept
    kept = json.loads((tmp_path / "summaries" / "a_to_b_seed0.json").read_text())
    assert kept["value"] == 1
    script.collect([str(runs)], replace=True)
    assert json.loads((tmp_path / "summaries" / "a_to_b_seed0.json").read_text())["value"] == 2


def test_a_refined_run_does_not_count_its_seed_twice_in_the_label_columns():
    script = load_transfer_script()
    label_only = {"source": "a", "target": "b", "seed": 0, "refinement": None,
                  "labels": {"which": "label-only"}}
    refined = {"source": "a", "target": "b", "seed": 0, "refinement": {"oracle": {}},
               "labels": {"which": "refined"}}
    other_seed = {**refined, "seed": 1}
    kept = script.label_runs_of([refined, label_only, other_seed])
    assert sorted((r["seed"], r["labels"]["which"]) for r in kept) == \
        [(0, "label-only"), (1, "refined")]


def test_a_run_with_other_settings_is_named_with_its_reason(tmp_path, monkeypatch):
    import json

    script = load_transfer_script()
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"a_to_b_seed2": "did not converge"}))
    monkeypatch.setattr(script, "NOTES", notes)

    def run(seed, max_iter):
        return {"source": "a", "target": "b", "seed": seed, "settings": {
            "pools": {"episodes": 80}, "labels": {"pairs": 1000},
            "transfer": {"gw": {"max_iter": max_iter}}}}

    lines = script.deviations([run(0, 100), run(1, 100), run(2, 300)])
    assert lines == ["- a -> b seed 2: transfer.gw.max_iter=300 (did not converge)"]
    assert script.deviations([run(0, 100), run(1, 100)]) == []


ROW = {"task": "t", "seed": 1, "bc_test_success_rate": 0.5, "bc_test_ci95": None,
       "test_success_rate": 0.6, "test_ci95": None, "test_improvement": 0.1,
       "bc_success_rate": 0.5, "refined_success_rate": 0.6, "reward_accuracy": 0.9,
       "labels": 10, "wall_time_s": 60.0, "test_episodes": 100}


def test_a_run_that_counted_its_env_steps_shows_its_learning_steps():
    script = load_script()
    row = ROW
    counted = script.render_experiment("x", [{**row, "env_steps": {"learning": 48750}}])
    assert "| 10 | 48,750 | 1.0 min |" in "\n".join(counted)
    assert "| 10 | - | 1.0 min |" in "\n".join(script.render_experiment("x", [row]))


def test_collect_counts_a_finetune_runs_safety_events(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "RUNS", tmp_path / "summaries")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    run = tmp_path / "runs" / "peel_s1"
    (run / "safety").mkdir(parents=True)
    rounds = [{"round": 0}, {"round": 1, "extra": {"refine": {"protective_stops": 2.0}}}]
    (run / "metrics.json").write_text(json.dumps(
        {"status": "finished", "task": "peel-v0", "seed": 1, "rounds": rounds}))
    events = [{"kind": "clip", "detail": {"limit": "contact_force_n"}},
              {"kind": "clip", "detail": {"limit": "max_step_translation_m"}},
              {"kind": "clip", "detail": {"limit": "contact_force_n"}},
              {"kind": "protective_stop"}]
    (run / "safety" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    unfinished = tmp_path / "runs" / "peel_s2"
    unfinished.mkdir()
    (unfinished / "metrics.json").write_text(json.dumps(
        {"status": "stopped", "task": "peel-v0", "seed": 2, "rounds": []}))
    script.collect("peel_x", [str(tmp_path / "runs")])  # the unfinished run is left out
    assert [f.name for f in (tmp_path / "summaries" / "peel_x").iterdir()] == [
        "peel-v0_seed1.json"]
    kept = json.loads((tmp_path / "summaries" / "peel_x" / "peel-v0_seed1.json").read_text())
    assert kept["safety"] == {
        "events": {"clip": 3, "protective_stop": 1},
        "clips_by_limit": {"contact_force_n": 2, "max_step_translation_m": 1},
        "refiner_protective_stops": 2}
    rendered = "\n".join(script.render_experiment("peel_x", [{**ROW, "safety": kept["safety"]}]))
    assert "clip 3 (contact_force_n 2, max_step_translation_m 1)" in rendered
    (run / "safety" / "events.jsonl").write_text('{"kind": "clip"}\nnot json\n')
    with pytest.raises(SystemExit, match="events.jsonl:2 is not a safety event"):
        script.collect("peel_x", [str(tmp_path / "runs")])


def test_every_committed_finetune_run_reports_its_safety_events():
    """The committed Peel-v0 finetune summaries carry their runs' safety-log counts, which
    the rendered block lists per seed (protective stops, refused commands, watchdog holds,
    clips, and the refiner's own protective stops)."""
    script = load_script()
    blocks = sorted(script.RUNS.glob("peel_finetune*"))
    assert blocks
    for block in blocks:
        assert len(list(block.glob("*.json"))) >= 3, block.name
    for file in sorted(f for block in blocks for f in block.glob("*.json")):
        safety = json.loads(file.read_text())["safety"]
        assert safety["events"].get("clip", 0) > 0, file.name  # none would mean an unread log
        assert isinstance(safety["refiner_protective_stops"], int), file.name


def test_peel_runs_in_their_cell_had_no_protective_stop_or_refused_command():
    """Issue #17's safety bar, read from every committed run made with `safety=peel_cell`
    (found by its command, so a new block is checked without being listed here; the counts
    come from each run's `safety/events.jsonl`): no protective stop, refused command or
    watchdog hold in any rollout on the arm, none in PPO's own simulated episodes, and the
    clips that kept it so are reported by limit."""
    script = load_script()
    files = sorted(
        f for f in script.RUNS.glob("*/*.json")
        if "safety=peel_cell" in json.loads(f.read_text())["config_name"].split()
    )
    blocks = {f.parent.name for f in files}
    assert {"peel_finetune_ppo_cell", "peel_finetune_ppo_cell_200_labels"} <= blocks
    for block in blocks:
        assert sum(f.parent.name == block for f in files) >= 3, block
    for file in files:
        summary = json.loads(file.read_text())
        safety = summary["safety"]
        assert summary["labels"] <= 200, file.name
        for kind in script.STOPS_AND_REFUSALS:
            assert safety["events"].get(kind, 0) == 0, (file.name, kind)
        assert safety["refiner_protective_stops"] == 0, file.name
        assert sum(safety["clips_by_limit"].values()) == safety["events"]["clip"] > 0
