"""The durable writer's files against lerobot's own: frame for frame through
``LeRobotDataset``, the same metadata and statistics, videos read back through lerobot and
``load_episodes``, lerobot's editing tools, resuming older recordings, and a kill at every
step of a save."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from robopref.data import load_episodes
from robopref.data.durable_writer import DurableEpisodeWriter

REPO = "test/storage"
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (3,), "names": ["a", "b", "c"]},
    "action": {"dtype": "float32", "shape": (2,), "names": None},
    "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    "sim.state": {"dtype": "float64", "shape": (2,), "names": None},
    "observation.images.front": {
        "dtype": "image",
        "shape": (6, 8, 3),
        "names": ["height", "width", "channels"],
    },
}


def episode(length: int, seed: int, features: dict = FEATURES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = {
        "observation.state": rng.normal(size=(length, 3)).astype(np.float32),
        "action": rng.normal(size=(length, 2)).astype(np.float32),
        "next.success": (np.arange(length) == length - 1)[:, None],
        "sim.state": rng.normal(size=(length, 2)),
    }
    for key, spec in features.items():
        if key.startswith("observation.images."):
            frames[key] = rng.integers(0, 256, (length, *spec["shape"]), dtype=np.uint8)
    return frames


EPISODES = [(episode(4, 0), "peel"), (episode(6, 1), "peel"), (episode(5, 2), "wipe")]


def lerobot_reference(root: Path, features: dict = FEATURES, episodes=EPISODES):
    """The same episodes written by lerobot's own writer."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.create(REPO, fps=10, features=features, root=root, use_videos=False)
    for frames, task in episodes:
        for t in range(len(frames["action"])):
            ds.add_frame({**{k: v[t] for k, v in frames.items()}, "task": task})
        ds.save_episode()
    ds.finalize()
    return root


def write(root: Path, features: dict = FEATURES, episodes=EPISODES) -> Path:
    with DurableEpisodeWriter(root, REPO, 10, features) as writer:
        for i, (frames, task) in enumerate(episodes):
            assert writer.save_episode(frames, task, {"i": i}) == i
    return root


def lerobot_dataset(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO, root=root)


def episodes_table(root: Path) -> list[dict]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_lerobot_reads_what_the_writer_wrote_exactly_as_its_own(tmp_path):
    ours = write(tmp_path / "ours")
    theirs = lerobot_reference(tmp_path / "theirs")
    mine, ref = lerobot_dataset(ours), lerobot_dataset(theirs)
    assert (mine.num_episodes, mine.num_frames, len(mine)) == (3, 15, 15)
    # Frame for frame, every feature, through lerobot's own reader.
    for i in range(len(ref)):
        a, b = mine[i], ref[i]
        assert a.keys() == b.keys()
        for key in b:
            if key == "task":
                assert a[key] == b[key]
            else:
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (i, key)
    # The same dataset-level metadata and statistics.
    info = json.loads((ours / "meta" / "info.json").read_text())
    assert info == json.loads((theirs / "meta" / "info.json").read_text())
    assert mine.meta.tasks.equals(ref.meta.tasks)
    stats = json.loads((ours / "meta" / "stats.json").read_text())
    ref_stats = json.loads((theirs / "meta" / "stats.json").read_text())
    assert stats.keys() == ref_stats.keys()
    for key in ref_stats:
        for name in ref_stats[key]:
            np.testing.assert_allclose(stats[key][name], ref_stats[key][name], rtol=1e-9)
    # The same episode rows, column for column (same names, types and order); only where
    # the files are differs: one file per episode here, lerobot packs them into one.
    located = ("data/file_index", "meta/episodes/file_index")
    rows, ref_rows = episodes_table(ours), episodes_table(theirs)
    assert [list(r) for r in rows] == [list(r) for r in ref_rows]
    for row, ref_row in zip(rows, ref_rows, strict=True):
        assert row["tasks"] == ref_row["tasks"]
        for key in ref_row.keys() - {"tasks", *located}:
            np.testing.assert_allclose(np.asarray(row[key], float), np.asarray(ref_row[key], float))
    assert [r["data/file_index"] for r in rows] == [0, 1, 2]
    data = pq.ParquetFile(ours / "data" / "chunk-000" / "file-001.parquet")
    assert data.schema_arrow.equals(
        pq.read_schema(theirs / "data" / "chunk-000" / "file-000.parquet")
    )
    # robopref's own reader: the same frames and each episode's metadata from the sidecar.
    loaded = load_episodes(ours)
    assert [len(e) for e in loaded] == [4, 6, 5] and [e.meta["i"] for e in loaded] == [0, 1, 2]
    assert np.array_equal(loaded[1].images["front"], EPISODES[1][0]["observation.images.front"])
    assert [e.task for e in loaded] == ["peel", "peel", "wipe"]


VIDEO = {
    **{k: v for k, v in FEATURES.items() if not k.startswith("observation.images.")},
    "observation.images.front": {
        "dtype": "video",
        "shape": (24, 32, 3),
        "names": ["height", "width", "channels"],
    },
}


def smooth_images(length: int, shift: int) -> np.ndarray:
    """A camera's view of a moving gradient: ``(T, 24, 32, 3)`` uint8."""
    y, x = np.mgrid[0:24, 0:32]
    frames = [
        np.stack([x * 4 + 3 * t + shift, y * 8, np.full_like(x, 120 + t)], axis=-1)
        for t in range(length)
    ]
    return np.asarray(frames, dtype=np.uint8)


def video_episodes() -> list:
    out = []
    for i, length in enumerate((12, 9)):
        frames = episode(length, 10 + i, VIDEO)
        frames["observation.images.front"] = smooth_images(length, 50 * i)
        out.append((frames, "peel"))
    return out


def test_videos_read_back_through_lerobot_load_episodes_and_lerobot_edit_tools(tmp_path):
    from lerobot.datasets.dataset_tools import delete_episodes

    root = write(tmp_path / "ds", VIDEO, video_episodes())
    videos = sorted(p.relative_to(root) for p in (root / "videos").rglob("*.mp4"))
    assert [str(p) for p in videos] == [
        "videos/observation.images.front/chunk-000/file-000.mp4",
        "videos/observation.images.front/chunk-000/file-001.mp4",
    ]
    info = json.loads((root / "meta" / "info.json").read_text())["features"]
    assert info["observation.images.front"]["info"]["video.codec"] == "av1"
    rows = episodes_table(root)
    assert [r["videos/observation.images.front/to_timestamp"] for r in rows] == [1.2, 0.9]
    assert "stats/observation.images.front/mean" in rows[0]

    source = [f["observation.images.front"] for f, _ in video_episodes()]
    loaded = load_episodes(root)
    for ep, frames in zip(loaded, source, strict=True):
        error = np.abs(ep.images["front"].astype(int) - frames.astype(int))
        assert ep.images["front"].shape == frames.shape
        print(f"AV1 round trip: mean |error| {error.mean():.2f}, p99 {np.percentile(error, 99)}")
        assert error.mean() < 3.0 and np.percentile(error, 99) < 16  # AV1 at CRF 30, 4:2:0
    ds = lerobot_dataset(root)
    image = ds[13]["observation.images.front"]  # frame 1 of episode 1, CHW float in [0, 1]
    decoded = (np.moveaxis(image.numpy(), 0, -1) * 255).round()
    assert np.abs(decoded - loaded[1].images["front"][1]).max() <= 1

    # lerobot's own editor accepts the dataset (and re-indexes its per-episode videos).
    edited = delete_episodes(ds, episode_indices=[0], output_dir=tmp_path / "edited")
    assert edited.meta.total_episodes == 1 and len(edited) == 9
    (kept,) = load_episodes(tmp_path / "edited")
    assert np.abs(kept.images["front"].astype(int) - loaded[1].images["front"]).max() <= 2


@pytest.mark.slow
def test_lerobot_edit_dataset_command_accepts_a_recording(tmp_path):
    root = write(tmp_path / "ds", VIDEO, video_episodes())
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("lerobot-edit-dataset")),
            "--repo_id",
            REPO,
            "--root",
            str(root),
            "--new_root",
            str(tmp_path / "out"),
            "--operation.type",
            "delete_episodes",
            "--operation.episode_indices",
            "[1]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [len(e) for e in load_episodes(tmp_path / "out")] == [12]


def test_resuming_a_dataset_written_by_lerobot_continues_its_files(tmp_path):
    from robopref.data.lerobot_io import sidecar_payload

    root = lerobot_reference(tmp_path / "ds")  # three episodes in one file, as lerobot packs
    sidecar = sidecar_payload("older", [{"task": t, "meta": {}} for _, t in EPISODES], 15, None)
    (root / "robopref.json").write_text(json.dumps(sidecar, indent=1))
    with DurableEpisodeWriter(root, REPO, 10, FEATURES, resume=True) as writer:
        assert writer.num_episodes == 3 and writer.dataset_id == "older"
        assert writer.save_episode(episode(7, 9), "wipe", {"new": True}) == 3
    ds = lerobot_dataset(root)
    assert ds.num_episodes == 4 and np.asarray(ds.hf_dataset["index"]).tolist() == list(range(22))
    assert episodes_table(root)[-1]["data/file_index"] == 1  # after lerobot's file-000
    assert ds.meta.tasks.index.tolist() == ["peel", "wipe"]
    assert [e.meta for e in load_episodes(root)] == [{}, {}, {}, {"new": True}]


def test_a_save_interrupted_at_any_step_leaves_the_dataset_as_it_was(tmp_path, monkeypatch):
    """Stop a save at each of its file-system steps in turn, leaving every half-written
    file behind as a SIGKILL would (no cleanup runs): the dataset is byte-identical to the
    version before, and the next writer on that root removes the leftovers and continues."""
    import robopref.data.durable_writer as durable_writer

    features = {k: v for k, v in FEATURES.items() if k != "observation.images.front"}
    root = write(tmp_path / "ds", features, [(episode(3, 0, features), "t")])
    writer = DurableEpisodeWriter(root, REPO, 10, features, resume=True)
    writer.save_episode(episode(4, 1, features), "t", {})  # a twin exists from now on
    (twin,) = tmp_path.glob(".ds.staging-*")
    # Only the dataset shows a sidecar: tools that find datasets by it never see the twin.
    assert sorted(p.name for p in twin.iterdir()) == [".robopref.json.twin", "data", "meta"]
    steps, step, swapped = 0, -1, False
    while step < steps and not swapped:
        step += 1
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        calls = {"n": 0}

        def killed(*args, _real=durable_writer._fsync_path, calls=calls, step=step, **kwargs):
            calls["n"] += 1
            if calls["n"] > step:
                raise KeyboardInterrupt  # stands in for the kill: nothing after it runs
            return _real(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(durable_writer, "_fsync_path", killed)
            patch.setattr(durable_writer.shutil, "rmtree", lambda *a, **k: None)
            with contextlib.suppress(KeyboardInterrupt):
                writer.save_episode(episode(5, 2, features), "t", {"step": step})
        steps = max(steps, calls["n"])
        # Before the swap nothing of the dataset has changed; after it (only the final
        # flush of the parent folder is left) the episode is in, whole.
        swapped = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} != before
        assert lerobot_dataset(root).num_episodes == 2 + swapped, step
        writer = DurableEpisodeWriter(root, REPO, 10, features, resume=True)
        assert not list(tmp_path.glob(".ds.staging-*"))  # the leftovers are gone
    assert swapped and step > 5  # data, episode row, info, stats, sidecar, folders: all tried
    assert [len(e) for e in load_episodes(root)] == [3, 4, 5]
    writer.save_episode(episode(6, 3, features), "t", {})
    writer.close()
    assert [len(e) for e in load_episodes(root)] == [3, 4, 5, 6]
