"""``robopref transfer source=<task> target=<task>``: cross-task preference transfer, end to end.

Steps (each committed to the run folder, so a killed run resumes where it stopped):

1. ``source_pool``, ``target_pool``: scripted-expert episodes of mixed quality on each task's
   train split (``pools``), saved as LeRobotDatasets.
2. ``source_labels``: labels on ``pools.source_pairs`` pairs drawn among
   ``transfer.source_nodes`` source segments (so every plan node carries labels), written as
   a source folder (``source/labels``, ``source/datasets.json``) that ``teacher=transfer
   teacher.source_run=...`` also reads.
3. ``source_reward``: a reward model trained on the source labels (the "apply the source's
   reward directly" baseline, and the ``learned`` representation's features).
   The source is labelled by the configured ``teacher`` (the oracle by default), which
   also labels the oracle refinement loop.
4. ``labels``: GW plan between the source nodes and ``labels.nodes`` target segments,
   transferred labels on ``labels.pairs`` target pairs drawn among them, scored against the
   target's oracle (plain, sharpened, rank-normalised; ``labels.variants``: the same transfer
   with other representations, fused GW or the progress orientation; ``few_shot``: oriented
   by ``labels.few_shot_labels`` target labels) beside a random plan, the source reward and
   the goal-distance heuristic; the plan heatmap and the calibration plot.
5. ``rewards``: held-out accuracy of target rewards trained on 10% oracle labels with and
   without the transferred ones, and BT against the Gaussian reward under flipped labels.
6. ``refine_oracle``, ``refine_transfer`` (``refinement.enabled``): the preference loop on
   the target with the oracle teacher, then with transferred labels only; both report BC and
   refined success on the target's test split.

Everything lands in ``metrics.json`` beside ``config.yaml``, ``plan.png``,
``calibration.png`` and TensorBoard logs.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from robopref.errors import ConfigError
from robopref.registry import build_config

PRESENTATION_KEYS = ("progress", "tensorboard")
DEMO_KEYS = ("seed", "device", "num_envs", "async_envs", "torch_threads", "progress",
             "tensorboard", "policy", "reward", "query", "refine", "loop", "train")


def packaged_group(group: str, name: str) -> dict:
    """A config group file shipped with robopref (``configs/<group>/<name>.yaml``)."""
    import yaml

    from robopref.cli import CONFIG_MODULE

    path = resources.files(CONFIG_MODULE) / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no {group} config named '{name}'")
    return yaml.safe_load(path.read_text())


def random_pairs(nodes: list, count: int, rng: np.random.Generator) -> list:
    """``count`` pairs of two different entries of ``nodes``, drawn uniformly."""
    first = rng.integers(0, len(nodes), count)
    second = (first + rng.integers(1, len(nodes), count)) % len(nodes)
    return [(nodes[i], nodes[j]) for i, j in zip(first, second, strict=True)]


class TransferRun:
    """One ``robopref transfer`` run in ``out_dir`` from a resolved config (a plain dict)."""

    def __init__(self, cfg: dict, out_dir: Path):
        import torch

        from robopref.envs import TASKS
        from robopref.loop import RunStore

        self.cfg, self.out = cfg, Path(out_dir)
        self.seed = int(cfg["seed"])
        torch.set_num_threads(int(cfg["torch_threads"]))
        if cfg["source"] == cfg["target"]:
            raise ConfigError(
                f"source and target are both {cfg['source']}: transfer needs two tasks"
            )
        self.tasks = {}
        for role in ("source", "target"):
            task_cfg, task_cls = TASKS.from_group({**cfg["env"], "task": cfg[role]}, "env")
            self.tasks[role] = task_cls(task_cfg)
        self.store = RunStore(self.out)
        identity = {k: v for k, v in cfg.items() if k not in PRESENTATION_KEYS and k != "hydra"}
        self.store.open(identity, {r: t.describe() for r, t in self.tasks.items()})
        self.pools: dict[str, dict] = {}
        self.started = time.perf_counter()

    # -- the algorithm box ---------------------------------------------------------------
    def run(self) -> dict:
        self.pools["source"] = self.step("source_pool", lambda: self.collect_pool("source"))
        self.pools["target"] = self.step("target_pool", lambda: self.collect_pool("target"))
        self.step("source_labels", self.label_source)
        source_model = self.step("source_reward", self.train_source_reward)
        labels = self.step("labels", lambda: self.score_labels(source_model))
        rewards = self.step("rewards", lambda: self.score_rewards(source_model))
        refinement = {}
        if self.cfg["refinement"]["enabled"]:
            for teacher in ("oracle", "transfer"):
                refinement[teacher] = self.step(f"refine_{teacher}",
                                                lambda t=teacher: self.refine(t))
        return self.write_metrics(labels, rewards, refinement)

    def step(self, key: str, compute):
        """Run ``key`` unless the run folder has it; steps whose product is on disk reload it."""
        import torch

        loaders = {"source_pool": lambda: self.load_pool("source"),
                   "target_pool": lambda: self.load_pool("target"),
                   "source_reward": self.load_source_reward}
        if self.store.done(key):
            return loaders[key]() if key in loaders else self.store.result(key)
        print(f"[transfer] {key}", flush=True)
        self.store.start(key)
        torch.manual_seed(zlib.crc32(f"{self.seed}/{key}".encode()))
        value = compute()
        self.store.commit(key, value if isinstance(value, dict) and key not in loaders else {},
                          {})
        return value

    def _rng(self, key: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    # -- pools and source labels ---------------------------------------------------------
    def pool_folder(self, role: str) -> Path:
        return self.out / "source" / "datasets" / "pool" if role == "source" else \
            self.out / "datasets" / "target_pool"

    def collect_pool(self, role: str) -> dict:
        from robopref.data import save_episodes
        from robopref.loop import RunStore
        from robopref.rollout import collect_episodes

        task, spec = self.tasks[role], self.cfg["pools"]
        noises = [float(x) for x in spec["action_noise"]]
        rng = self._rng(f"pool/{role}")
        env = task.make_vector_env(int(self.cfg["num_envs"]), self.seed,
                                   bool(self.cfg["async_envs"]))
        episodes = []
        try:
            per_level = np.array_split(np.arange(int(spec["episodes"])), len(noises))
            for level, (noise, members) in enumerate(zip(noises, per_level, strict=True)):
                expert = task.make_expert(
                    {"action_noise": noise, "mistarget_prob": float(spec["mistarget_prob"])},
                    env.num_envs, seed=self.seed * 1000 + level,
                )
                episodes += collect_episodes(
                    env, expert, task.draw("train", len(members), rng), task.name,
                    task.episode_steps, source=f"{role}-pool", progress=self.cfg["progress"],
                )
        finally:
            env.close()
        folder = self.pool_folder(role)
        save_episodes(episodes, folder, fps=task.fps, repo_id=f"robopref/{role}_pool",
                      overwrite=True, state_dim=task.state_dim)
        store = RunStore(self.out / "source") if role == "source" else self.store
        store.register_dataset(episodes[0].dataset_id, folder)
        return {e.id: e for e in episodes}

    def load_pool(self, role: str) -> dict:
        from robopref.data import load_episodes

        return {e.id: e for e in load_episodes(self.pool_folder(role))}

    def label_source(self) -> dict:
        from robopref.data import save_preferences
        from robopref.preferences import PREFERENCE_SOURCES
        from robopref.preferences.segments import sample_segments

        task, pool = self.tasks["source"], self.pools["source"]
        # Pairs among source_nodes segments, so every node the plan uses carries labels.
        rng = self._rng("source_pairs")
        nodes = sample_segments(pool, int(self.cfg["pools"]["segment_length"]),
                                int(self.cfg["transfer"]["source_nodes"]), rng)
        pairs = random_pairs(nodes, int(self.cfg["pools"]["source_pairs"]), rng)
        group = dict(self.cfg["teacher"])
        if group.get("reward_scale") is None:
            group["reward_scale"] = task.reward_scale
        config, cls = PREFERENCE_SOURCES.from_group(group, "teacher", seed=self.seed)
        teacher = cls(config)
        if not getattr(teacher, "needs_true_rewards", False):
            raise ConfigError("the source is labelled by a scripted teacher: pick teacher=oracle, "
                              "mistake, stochastic, myopic, skip or equal")
        preferences = [p for p in teacher.label(pairs, pool) if p is not None]
        save_preferences(preferences, self.out / "source" / "labels" / "source.json")
        return {"pairs": len(pairs), "labels": len(preferences)}

    def source_preferences(self):
        from robopref.data import load_preferences

        return load_preferences(self.out / "source" / "labels" / "source.json")

    # -- reward models -------------------------------------------------------------------
    def make_reward(self, name: str, seed: int, role: str = "target"):
        """An untrained reward model ``name`` for ``role``'s task (the run's reward group when
        its name matches, otherwise the packaged defaults of ``name``)."""
        from robopref.rewards import REWARD_MODELS
        from robopref.training import Trainer, TrainerConfig

        group = self.cfg["reward"] if self.cfg["reward"]["name"] == name else \
            packaged_group("reward", name)
        config, cls = REWARD_MODELS.from_group(group, "reward", seed=seed)
        values = {"device": self.cfg["device"], "progress": False, "seed": seed,
                  **self.cfg["train"]["reward"]}
        tb = self.out / "tb" if self.cfg["tensorboard"] else None
        trainer = Trainer(build_config(TrainerConfig, values, "train.reward"),
                          name=f"reward_{role}_{name}", log_dir=tb)
        task = self.tasks[role]
        return cls(task.obs_dim, task.act_dim, config, trainer)

    def train_source_reward(self):
        model = self.make_reward(self.cfg["reward"]["name"], self.seed, role="source")
        model.fit(self.source_preferences(), self.pools["source"])
        model.save(self.out / "source" / "reward")
        return model

    def load_source_reward(self):
        from robopref.rewards import REWARD_MODELS

        model = self.make_reward(self.cfg["reward"]["name"], self.seed, role="source")
        _, cls = REWARD_MODELS.lookup(self.cfg["reward"]["name"])
        return cls.load(self.out / "source" / "reward", model.trainer)

    # -- label and reward scores ---------------------------------------------------------
    def transfer_source(self, source_model, calibration: str | None = None,
                        variant: dict | None = None):
        """The transfer source of this run's settings, with ``calibration`` and a variant's
        overrides (``representation``, ``orient``, ``gw``) in place of the configured ones."""
        from robopref.preferences.transfer import SourceBank, TransferConfig, TransferSource

        values = {k: v for k, v in self.cfg["transfer"].items() if k not in ("name",)}
        values.update(source_run=None, seed=self.seed)
        if calibration is not None:
            values["calibration"] = calibration
        for key, value in (variant or {}).items():
            values[key] = {**values[key], **value} if key == "gw" else value
        config = build_config(TransferConfig, values, "transfer")
        bank = SourceBank(self.source_preferences(), self.pools["source"], config.source_nodes,
                          self.seed)
        learned = config.representation == "learned"
        return TransferSource(config, bank=bank, reward_model=source_model if learned else None)

    def score_variants(self, source_model, pairs, pool) -> tuple[dict, dict, dict]:
        """Labels of every ``labels.variants`` entry (the same transfer with another
        representation, solver or orientation) on ``pairs``: ``(labels, sources, failed)``;
        a variant that cannot run on these tasks or whose plan did not converge is reported
        in ``failed``, never used."""
        from robopref.preferences.transfer import TransferError

        labels, sources, failed = {}, {}, {}
        for name, variant in (self.cfg["labels"].get("variants") or {}).items():
            try:
                source = self.transfer_source(source_model, "plain", dict(variant))
                labels[name] = source.soft_labels(pairs, pool)
                sources[name] = source
            except TransferError as error:  # PlanNotConverged included
                failed[name] = str(error)
        return labels, sources, failed

    def score_labels(self, source_model) -> dict:
        from robopref.preferences.segments import sample_segments
        from robopref.preferences.transfer import rank_normalise, sharpen, transfer_labels
        from robopref.preferences.transfer.evaluation import (
            few_shot_orientation,
            label_scores,
            oracle_truth,
            random_plan,
            reward_model_labels,
        )
        from robopref.preferences.transfer.orientation import goal_distance_labels
        from robopref.preferences.transfer.plots import plot_calibration, plot_plan
        from robopref.preferences.transfer.representations import TransferError

        spec, pool = self.cfg["labels"], self.pools["target"]
        length = int(self.cfg["pools"]["segment_length"])
        rng = self._rng("label_pairs")
        pairs = random_pairs(sample_segments(pool, length, int(spec["nodes"]), rng),
                             int(spec["pairs"]), rng)
        truth = oracle_truth(pairs, pool)

        source = self.transfer_source(source_model, calibration="plain")
        began = time.perf_counter()
        plain = source.soft_labels(pairs, pool)
        solve_s = time.perf_counter() - began
        plan = source.last["plan"]
        # The node order the source built: map each pair onto it for the random-plan baseline.
        order = {s: k for k, s in enumerate(source.last["target_segments"])}
        index_a = np.array([order[a] for a, _ in pairs])
        index_b = np.array([order[b] for _, b in pairs])
        temperature = source.temperature()
        candidates = {"plain": plain, "sharpen": sharpen(plain, temperature),
                      "rank": rank_normalise(plain)}
        baselines = {
            "random_plan": transfer_labels(
                random_plan(source.bank.labels.n, len(order), self._rng("random_plan")),
                source.bank.labels, index_a, index_b),
        }
        if self.tasks["source"].obs_dim == self.tasks["target"].obs_dim:
            baselines["source_reward"] = reward_model_labels(source_model, pairs, pool)
        # No source labels at all: prefer the segment nearer its goal (Meta-World only).
        with contextlib.suppress(TransferError):
            baselines["goal_distance"] = goal_distance_labels(pairs, pool)
        # GW alone cannot tell a mirror image of the target's geometry from the target itself
        # (docs/transfer.md, "Which way round"): the variants score the same transfer with
        # other representations, fused GW's cross-task cost and the progress orientation.
        alternatives, sources, unconverged = self.score_variants(source_model, pairs, pool)
        orientations = {name: s.last.get("orientation") for name, s in sources.items()}
        orientations["plain"] = source.last.get("orientation")
        few_shot = None
        if int(spec.get("few_shot_labels") or 0) > 0:
            # Few-shot, apart from the zero-shot scores: the configured transfer read as it
            # comes out of the plan, oriented by a handful of target oracle labels.
            unoriented = self.transfer_source(source_model, "plain", {"orient": "none"})
            alternatives["few_shot"], few_shot = few_shot_orientation(
                unoriented, unoriented.soft_labels(pairs, pool), pairs, pool,
                int(spec["few_shot_labels"]), self._rng("few_shot_pairs"))
        scores = {name: label_scores(z, truth)
                  for name, z in {**candidates, **alternatives, **baselines}.items()}
        configured = self.cfg["transfer"]["calibration"]
        title = f"{self.cfg['source']} -> {self.cfg['target']} seed {self.seed}"
        dense = plan.dense()
        source_returns = np.array([s.rewards(source.bank.pool).sum()
                                   for s in source.bank.segments])
        target_returns = np.array([s.rewards(pool).sum()
                                   for s in source.last["target_segments"]])
        plot_plan(dense, source_returns, target_returns, self.out / "plan.png", title)
        plot_calibration(candidates, truth, self.out / "calibration.png", title)
        # Does the plan put good source segments on good target ones?
        rank_corr = float(np.corrcoef(
            np.argsort(np.argsort(source_returns)) @ dense / dense.sum(0),
            np.argsort(np.argsort(target_returns)))[0, 1])
        return {
            "scores": scores,
            "not_converged": unconverged,
            "orientation": orientations,
            "few_shot": few_shot,
            "configured_calibration": configured,
            "transfer": scores[configured],
            "temperature": temperature,
            "oracle_ties": int((truth == 0.5).sum()),
            "source_nodes": int(source.bank.labels.n),
            "target_nodes": len(order),
            "plan_info": {k: v for k, v in plan.info.items()
                          if isinstance(v, int | float | str | bool)},
            "plan_return_rank_correlation": rank_corr,
            "solve_s": solve_s,
        }

    def score_rewards(self, source_model) -> dict:
        from robopref.preferences.segments import sample_pairs
        from robopref.preferences.transfer.evaluation import reward_rows

        spec, pool = self.cfg["labels"], self.pools["target"]
        length = int(self.cfg["pools"]["segment_length"])
        ids = sorted(pool)
        rng = self._rng("reward_pairs")
        order = rng.permutation(len(ids))
        train_ids = [ids[i] for i in order[: len(ids) // 2]]
        heldout_ids = [ids[i] for i in order[len(ids) // 2 :]]
        train = sample_pairs(pool, length, int(spec["reward_train_pairs"]), rng, train_ids)
        heldout = sample_pairs(pool, length, int(spec["heldout_pairs"]), rng, heldout_ids)
        source = self.transfer_source(source_model)
        transferred = source.soft_labels(train, pool)
        seeds = [self.seed * 100 + k for k in range(int(spec["reward_seeds"]))]
        return reward_rows(self.make_reward, train, transferred, heldout, pool,
                           float(spec["oracle_fraction"]), float(spec["flip_prob"]), seeds,
                           default_reward=self.cfg["reward"]["name"])

    # -- refinement on the target --------------------------------------------------------
    def refine(self, teacher: str) -> dict:
        from robopref.cli.demo import run_demo_config

        cfg = {k: self.cfg[k] for k in DEMO_KEYS}
        cfg.update(env={**self.cfg["env"], "task": self.cfg["target"]}, demos_path=None,
                   policy_checkpoint=None)
        if teacher == "oracle":
            cfg["teacher"] = self.cfg["teacher"]
        else:
            cfg["teacher"] = {**self.cfg["transfer"], "source_run": str(self.out / "source")}
        summary = run_demo_config(cfg, self.out / f"refine_{teacher}", [])
        return {k: summary.get(k) for k in (
            "status", "test_success_rate", "test_ci95", "bc_test_success_rate", "bc_test_ci95",
            "test_improvement", "test_episodes", "reward_accuracy", "labels", "wall_time_s")}

    # -- output --------------------------------------------------------------------------
    def write_metrics(self, labels: dict, rewards: dict, refinement: dict) -> dict:
        from robopref.loop.evaluation import json_safe

        metrics = {
            "format_version": 1,
            "kind": "transfer",
            "source": self.cfg["source"],
            "target": self.cfg["target"],
            "seed": self.seed,
            "status": "finished",
            "labels": labels,
            "rewards": rewards,
            "refinement": refinement or None,
            "settings": {k: self.cfg[k] for k in ("pools", "labels", "transfer", "refinement")},
            "loop_config": self.cfg["loop"] if refinement else None,
            "wall_time_s": time.perf_counter() - self.started,
        }
        self.store.write_json("metrics.json", json_safe(metrics))
        return metrics


def format_summary(metrics: dict) -> str:
    labels, rewards = metrics["labels"], metrics["rewards"]
    lines = [f"{metrics['source']} -> {metrics['target']} (seed {metrics['seed']})"]
    for name, s in labels["scores"].items():
        lines.append(f"  labels {name:<13} accuracy {s['accuracy']:.3f}  top half "
                     f"{s['top_half_accuracy']:.3f}  ECE {s['ece']:.3f}  coverage "
                     f"{s['coverage']:.2f}")
    lines.append(f"  reward accuracy: 10% oracle {rewards['oracle_subset']:.3f}, + transferred "
                 f"{rewards['oracle_subset_plus_transfer']:.3f}, transferred only "
                 f"{rewards['transfer_only']:.3f}, all oracle {rewards['oracle_all']:.3f}")
    lines.append(f"  20% flipped: BT {rewards['bt_flipped']:.3f}, Gaussian "
                 f"{rewards['gaussian_flipped']:.3f}")
    for teacher, r in (metrics.get("refinement") or {}).items():
        lines.append(f"  refined ({teacher}): test {r['test_success_rate']:.2f} "
                     f"(BC {r['bc_test_success_rate']:.2f})")
    return "\n".join(lines)


def run_transfer_config(cfg: dict, out_dir: Path) -> dict:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "config.yaml").exists():
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    metrics = TransferRun(cfg, out_dir).run()
    print(format_summary(metrics))
    print(f"results: {out_dir}")
    return metrics


def run_transfer(cfg) -> dict:
    """The Hydra task: a run in Hydra's output folder (rerun with the same ``hydra.run.dir``
    to resume it)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    return run_transfer_config(OmegaConf.to_container(cfg, resolve=True), out_dir)


def resume_transfer(run_dir: str) -> dict:
    """Continue the transfer run in ``run_dir`` with the config it was started with."""
    import yaml

    out_dir = Path(run_dir)
    if not (out_dir / "config.yaml").is_file() or not (out_dir / "run.json").is_file():
        raise ConfigError(
            f"{out_dir} is not a robopref transfer run folder (no config.yaml/run.json): pass "
            "the folder a 'robopref transfer' run wrote"
        )
    return run_transfer_config(yaml.safe_load((out_dir / "config.yaml").read_text()), out_dir)
