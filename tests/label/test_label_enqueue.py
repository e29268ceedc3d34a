"""``robopref label enqueue`` from a dataset folder, and ``robopref reward train`` from the
database alone when the dataset moved; one-line errors of both commands."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from labelkit import new_store

from robopref.data import Episode, save_episodes
from robopref.errors import ConfigError, DatasetError
from robopref.label import cli
from robopref.preferences import ScriptedTeacher, TeacherConfig


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """Six 30-step episodes whose reward is the first observation entry, saved as a dataset
    under a fixed dataset id: the held-out split of ``train_from_labels`` hashes episode ids,
    which otherwise are drawn afresh (uuid4) and made its held-out accuracy vary run to run."""
    monkeypatch.setattr("robopref.data.lerobot_io.new_dataset_id",
                        lambda: "00000000-0000-4000-8000-00000000a11e")
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(6):
        obs = rng.normal(size=(30, 4)).astype(np.float32)
        episodes.append(Episode(obs, rng.normal(size=(30, 2)), obs[:, 0], np.zeros(30, bool)))
    return save_episodes(episodes, tmp_path / "data" / "ds", fps=10)


def _enqueue(db, folder, *extra):
    cli.main(["enqueue", str(folder), "--db", str(db), "--pairs", "40", "--segment-length",
              "5", "--episode-scores", "2", *extra])


def test_enqueue_from_a_dataset_is_idempotent_and_stores_path_hints(tmp_path, dataset, capsys):
    db = tmp_path / "labels.db"
    _enqueue(db, dataset)
    assert "40 new pair queries (0 already there), 2 new score requests" in \
        capsys.readouterr().out
    _enqueue(db, dataset)
    assert "0 new pair queries (40 already there), 0 new score requests (2 already there)" in \
        capsys.readouterr().out
    _enqueue(db, dataset, "--seed", "1", "--pairs", "5")
    assert "5 new pair queries" in capsys.readouterr().out  # another draw: other pairs
    store = new_store(db)
    (annotator, _) = store.create_annotator("a")
    queries = store.upcoming_for(annotator, "ds", limit=100)
    kinds = [q.kind for q in queries]
    assert kinds.count("pair") == 45 and 2 <= kinds.count("episode_score") <= 4
    assert {q.first_dataset_path for q in queries} == {str(dataset.resolve())}
    assert all(len(q.first) == 5 for q in queries if q.kind == "pair")
    store.db.close()


def test_disagreement_without_a_reward_is_one_line(tmp_path, dataset, capsys):
    with pytest.raises(SystemExit) as info:
        _enqueue(tmp_path / "labels.db", dataset, "--query", "entropy")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--reward CHECKPOINT" in err


def test_train_from_labels_finds_a_moved_dataset_under_search_roots(tmp_path, dataset):
    from robopref.data import load_episodes
    from robopref.label.enqueue import enqueue
    from robopref.label.train import train_from_labels
    from robopref.rewards import BTEnsemble, EnsembleConfig
    from robopref.training import Trainer, TrainerConfig

    db = tmp_path / "labels.db"
    enqueue(str(db), dataset, pairs=100, segment_length=5, answers=1, log=lambda _: None)
    store = new_store(db)
    annotator, _ = store.create_annotator("oracle")
    pool = {e.id: e for e in load_episodes(dataset)}
    teacher = ScriptedTeacher(TeacherConfig())
    while (q := store.next_query_for(annotator)) is not None:
        [p] = teacher.label([(q.first, q.second)], pool)
        store.submit_label(annotator, q.id, p.label.value)
    store.db.close()
    moved = tmp_path / "elsewhere"
    shutil.move(str(dataset.parent), moved)

    def model(obs_dim, act_dim):
        trainer = Trainer(TrainerConfig(steps=400, batch_size=32, device="cpu", progress=False))
        return BTEnsemble(obs_dim, act_dim, EnsembleConfig(hidden_sizes=[32]), trainer)

    with pytest.raises(DatasetError, match="search root") as info:
        train_from_labels(str(db), model, tmp_path / "out", log=lambda _: None)
    assert "\n" not in str(info.value)
    metrics = train_from_labels(str(db), model, tmp_path / "out", roots=[moved],
                                heldout_fraction=0.3, log=lambda _: None)
    assert metrics["pairs"]["labelled"] == 100 and metrics["heldout_true_accuracy"] > 0.7
    assert (tmp_path / "out" / "reward" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "preferences_heldout.json").is_file()


def test_reward_train_errors_are_one_line(tmp_path, capsys):
    from robopref.cli import main

    for argv, message in ((["reward"], "robopref reward train labels=URL"),
                          (["reward", "fit"], "robopref reward train labels=URL"),
                          (["reward", "train", f"hydra.run.dir={tmp_path}/a"],
                           "no label database given"),
                          (["reward", "train", f"labels={tmp_path}/empty.db",
                            f"hydra.run.dir={tmp_path}/b"], "holds no answered pair")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and message in err, (argv, err)


def test_enqueue_checks_its_numbers(tmp_path, dataset):
    from robopref.label.enqueue import enqueue

    with pytest.raises(ConfigError, match="--segment-length"):
        enqueue(str(tmp_path / "l.db"), dataset, segment_length=0, log=lambda _: None)
