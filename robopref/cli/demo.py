"""``robopref demo``: the preference loop on any task, assembled from a resolved config.

``robopref demo [overrides]`` starts a run in a new folder; ``robopref demo --resume RUN_DIR``
continues a killed one from its last completed step, with the config it was started with
(overrides that would change it are refused).
"""

from __future__ import annotations

import json
from pathlib import Path

from robopref.errors import ConfigError
from robopref.registry import build_config

# Keys that change how a run is shown, not what it computes: a resumed run may differ here.
PRESENTATION_KEYS = ("progress", "tensorboard")


def run_identity(cfg: dict) -> dict:
    """The part of a resolved config a resumed run must share with the original."""
    return {k: v for k, v in cfg.items() if k not in PRESENTATION_KEYS and k != "hydra"}


def teacher_group(group: dict, task) -> dict:
    """The teacher's options with the task's reward unit and 0-9 score mapping filled in where
    the config leaves them ``null``."""
    group = dict(group)
    if group.get("reward_scale") is None:  # every source takes the task's unit
        group["reward_scale"] = task.reward_scale
    for key, value in (("score_range", task.score_range), ("score_basis", task.score_basis)):
        if key in group and group[key] is None:
            group[key] = value
    return group


def build_demo(cfg: dict, out_dir: Path):
    """Assemble a ``PreferenceLoop`` and the envs it runs in (close them after) from a
    resolved demo config (a plain dict)."""
    import torch

    from robopref.data import load_episodes
    from robopref.envs import TASKS
    from robopref.loop import LoopConfig, PreferenceLoop, RunStore
    from robopref.policies import POLICIES, BCPolicy, load_policy
    from robopref.preferences import PREFERENCE_SOURCES, QUERY_SELECTORS
    from robopref.refine import REFINERS
    from robopref.rewards import REWARD_MODELS
    from robopref.training import Trainer, TrainerConfig

    seed = int(cfg["seed"])
    torch.set_num_threads(int(cfg["torch_threads"]))
    torch.manual_seed(seed)
    tb_dir = out_dir / "tb" if cfg["tensorboard"] else None

    def trainer(name: str) -> Trainer:
        values = {"device": cfg["device"], "progress": cfg["progress"], "seed": seed}
        values.update(cfg["train"][name])
        return Trainer(
            build_config(TrainerConfig, values, f"train.{name}"), name=name, log_dir=tb_dir
        )

    task_cfg, task_cls = TASKS.from_group(cfg["env"], "env")
    task = task_cls(task_cfg)
    loop_cfg = build_config(LoopConfig, {**cfg["loop"], "seed": seed}, "loop")
    store = RunStore(out_dir)
    store.open(run_identity(cfg), task.describe())

    def env_for() -> object:
        return task.make_vector_env(int(cfg["num_envs"]), seed, bool(cfg["async_envs"]))

    vec_env = env_for()
    envs = [vec_env]
    try:
        validation_env = None
        if loop_cfg.validation_episodes > 0:
            validation_env = env_for()
            envs.append(validation_env)
        obs_dim, act_dim = task.obs_dim, task.act_dim

        policy_group = dict(cfg["policy"])
        for key, bound in (("action_low", task.action_low), ("action_high", task.action_high)):
            if policy_group.get(key) is None:
                policy_group[key] = [float(b) for b in bound]
        policy_cfg, policy_cls = POLICIES.from_group(policy_group, "policy")
        policy = policy_cls(obs_dim, act_dim, policy_cfg)
        if cfg.get("policy_checkpoint"):
            path = Path(cfg["policy_checkpoint"])
            policy = load_policy(path) if path.is_dir() else BCPolicy.load(path)
            if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
                raise ConfigError(
                    f"policy_checkpoint {path} has obs/act dims {policy.obs_dim}/"
                    f"{policy.act_dim}, {task.name} has {obs_dim}/{act_dim}: use a checkpoint "
                    "trained on this task"
                )
        demos = None
        if cfg.get("demos_path"):
            demos = load_episodes(cfg["demos_path"])
            if (demos[0].obs_dim, demos[0].act_dim) != (obs_dim, act_dim):
                raise ConfigError(
                    f"demos_path {cfg['demos_path']} holds obs/act dims {demos[0].obs_dim}/"
                    f"{demos[0].act_dim}, {task.name} needs {obs_dim}/{act_dim}: record demos "
                    "on this task"
                )
        reward_cfg, reward_cls = REWARD_MODELS.from_group(cfg["reward"], "reward", seed=seed)
        query_cfg, query_cls = QUERY_SELECTORS.from_group(cfg["query"], "query")
        source_cfg, source_cls = PREFERENCE_SOURCES.from_group(
            teacher_group(cfg["teacher"], task), "teacher", seed=seed
        )
        refine_cfg, refine_cls = REFINERS.from_group(cfg["refine"], "refine")
        source_args = {}
        if getattr(source_cls, "uses_run_folder", False):
            # People's labelling page finds the episodes by these folders (absolute: the
            # server runs elsewhere); read at each submit, as the run adds datasets.
            def dataset_paths() -> dict[str, str]:
                return {i: str(store.path(p).resolve()) for i, p in store.datasets().items()}

            source_args = {"dataset_paths": dataset_paths, "run_name": out_dir.resolve().name}

        loop = PreferenceLoop(
            loop_cfg,
            task=task,
            vec_env=vec_env,
            expert=None if demos else task.make_expert(None, vec_env.num_envs, seed=seed),
            policy=policy,
            bc_trainer=trainer("bc"),
            reward_model=reward_cls(obs_dim, act_dim, reward_cfg, trainer("reward")),
            selector=query_cls(query_cfg),
            source=source_cls(source_cfg, **source_args),
            refiner=refine_cls(refine_cfg, trainer("refine"), task=task, vec_env=vec_env),
            store=store,
            progress=bool(cfg["progress"]),
            tensorboard=bool(cfg["tensorboard"]),
            demos=demos,
            pretrained=bool(cfg.get("policy_checkpoint")),
            validation_env=validation_env,
            demos_root=Path(cfg["demos_path"]) if cfg.get("demos_path") else None,
        )
    except BaseException:
        for env in envs:
            env.close()
        raise
    return loop, envs


def run_demo_config(cfg: dict, out_dir: Path, overrides: list[str]) -> dict:
    """Run (or resume) the demo of resolved config ``cfg`` in ``out_dir``."""
    import yaml

    from robopref.report import format_table, plot_run

    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "config.yaml").exists():
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (out_dir / "overrides.json").write_text(json.dumps(overrides))
    loop, envs = build_demo(cfg, out_dir)
    try:
        summary = loop.run()
    finally:
        for env in envs:
            env.close()
        loop.source.close()
    plot_run(summary, out_dir)
    print(format_table([summary]))
    print(f"results: {out_dir}")
    return summary


def run_demo(cfg) -> dict:
    """The Hydra task: a new run in Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return run_demo_config(resolved, out_dir, list(hydra_cfg.overrides.task))


def resume_demo(run_dir: str, overrides: list[str]) -> dict:
    """Continue the run in ``run_dir`` with the config it was started with; ``overrides``
    may restate that config but not change it."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from robopref.cli import CONFIG_MODULE

    out_dir = Path(run_dir)
    if not (out_dir / "overrides.json").is_file() or not (out_dir / "run.json").is_file():
        raise ConfigError(
            f"{out_dir} is not a robopref demo run folder (no overrides.json/run.json): pass the "
            "folder a 'robopref demo' run wrote"
        )
    original = json.loads((out_dir / "overrides.json").read_text())
    with initialize_config_module(CONFIG_MODULE, version_base=None):
        cfg = compose("demo", overrides=[*original, *overrides])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return run_demo_config(resolved, out_dir, original)
