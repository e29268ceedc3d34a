"""``robopref finetune``: rounds of preference finetuning on an arm, assembled from a resolved
config. The loop is the one ``PreferenceLoop``: its episodes come from the arm through the
safety layer (``ArmCollector``), it asks the source for pair labels and whole-episode scores,
refines a residual on the frozen base, evaluates on unseen scenes and writes a round report.

``robopref finetune hardware=sim task=peel base=DIR`` starts a run in a new folder;
``robopref finetune --resume RUN_DIR`` continues a killed one from its last completed step
(within a rollout step, after its last durable episode).
"""

from __future__ import annotations

import json
from pathlib import Path

from robopref.cli.demo import run_identity, teacher_group
from robopref.errors import ConfigError
from robopref.registry import build_config

ARM_ONLY_TASKS = ("reach", "none")


def _task_and_arm_task(cfg: dict, arm_name: str, n_joints: int, safety, fps: int):
    """The loop's ``Task`` and the arm-side task the rollouts drive (``None`` for none)."""
    from robopref.envs import ARM_TASKS
    from robopref.envs.arm_task import ArmTask

    name, steps = cfg["task"], cfg["finetune"]["episode_steps"]
    if name == "peel":
        from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task

        if arm_name != "sim":
            raise ConfigError(f"task=peel needs hardware=sim (the fruit is simulated), got "
                              f"hardware={arm_name}; on a real arm use task=none or reach")
        peel = {"control_hz": fps, **cfg["peel"]}
        if steps is not None:
            peel["episode_steps"] = int(steps)
        safety_opts = {k: v for k, v in cfg["safety"].items() if k != "event_log_path"}
        task = PeelV0Task(build_config(PeelTaskConfig, {"peel": peel, "safety": safety_opts},
                                       "finetune"))
        config_cls, impl = ARM_TASKS["peel"]
        return task, impl(task.peel_config)
    if name not in ARM_ONLY_TASKS:
        raise ConfigError(f"unknown task '{name}': choose peel (hardware=sim), reach or none")
    if steps is None:
        raise ConfigError(f"task={name} has no episode length of its own: set "
                          "finetune.episode_steps (control ticks)")
    arm_task, dims, metrics, quality, scale = None, 0, (), (), 1.0
    if name == "reach":
        config_cls, impl = ARM_TASKS["reach"]
        arm_task = impl(build_config(config_cls, cfg["reach"], "reach"))
        dims, scale = 3, arm_task.config.reward_scale
        metrics, quality = ("distance_m",), ("distance_m", "closest_m")
    task = ArmTask(name, n_joints, dims, int(steps), fps, safety.max_step_translation_m,
                   safety.max_step_rotation_rad, scale, metrics, quality)
    return task, arm_task


def _teleop(cfg: dict):
    from robopref.hardware import TELEOPS, make_teleop

    options = dict(cfg["teleop"])
    name = options.pop("name", None)
    if name == "scripted":
        from robopref.hardware.teleop import ScriptedTeleop

        # The policy drives; a scripted operator only presses its button schedule (stops).
        options.pop("policy", None)
        options.pop("expert", None)
        return ScriptedTeleop(TELEOPS.config("scripted", options, "teleop"))
    return make_teleop(name, **options)


def _sensor(cfg: dict, raw_arm, simulated: bool):
    from robopref.hardware import SENSORS, make_sensor

    options = dict(cfg["sensor"])
    name = options.pop("name", None)
    if name == "none":
        return None
    if name == "sim":
        if not simulated:
            raise ConfigError("sensor=sim reads the simulated arm: use hardware=sim")
        from robopref.hardware.sim_sensor import SimWrenchSensor

        return SimWrenchSensor(SENSORS.config("sim", options), raw_arm)
    return make_sensor(name, **options)


def residual_bound(group: dict, task) -> dict:
    """The refiner's options with the residual's bound in the task's own action units when
    the config leaves ``residual_policy.max_residual`` null: ``max_residual_fraction`` of the
    task's half action range (0.2 of Peel-v0's step limits: 2 mm and 10 mrad per tick), not of
    the range the base policy declares (BC on the arm declares a wider one)."""
    group = dict(group)
    options = dict(group.get("residual_policy") or {})
    if "residual_policy" in group and options.get("max_residual") is None:
        fraction = float(options.get("max_residual_fraction", 0.2))
        options["max_residual"] = [fraction * float(h) for h in task.action_half_range]
        group["residual_policy"] = options
    return group


def build_finetune(cfg: dict, out_dir: Path):
    """A ``PreferenceLoop`` on the configured arm and what to close after it (a list of
    callables), from a resolved finetune config (a plain dict)."""
    import torch

    from robopref.hardware import make_arm
    from robopref.hardware.safety import SafeArm, SafetyConfig
    from robopref.loop import LoopConfig, PreferenceLoop, RunStore
    from robopref.loop.arm_rollouts import ArmCollector, ArmRolloutConfig
    from robopref.loop.round_report import ReportConfig, RoundReporter
    from robopref.policies import BCPolicy, load_policy
    from robopref.preferences import PREFERENCE_SOURCES, QUERY_SELECTORS
    from robopref.refine import REFINERS
    from robopref.rewards import REWARD_MODELS
    from robopref.training import Trainer, TrainerConfig

    seed = int(cfg["seed"])
    torch.set_num_threads(int(cfg["torch_threads"]))
    torch.manual_seed(seed)
    if not cfg.get("base"):
        raise ConfigError("finetune needs the base policy: base=DIR (a BC checkpoint folder)")
    fin, rec = cfg["finetune"], cfg["record"]
    fps = int(rec["fps"])
    safety = build_config(SafetyConfig, cfg["safety"], "safety")
    hardware = dict(cfg["hardware"])
    arm_name = hardware.pop("name", None)
    watchdog = bool(hardware.pop("watchdog", False))
    raw_arm = make_arm(arm_name, **hardware)
    simulated = arm_name == "sim"
    task, arm_task = _task_and_arm_task(cfg, arm_name, raw_arm.n_joints, safety, fps)
    loop_cfg = build_config(LoopConfig, {**cfg["loop"], "seed": seed}, "loop")
    path = Path(cfg["base"])
    policy = load_policy(path) if path.is_dir() else BCPolicy.load(path)
    if (policy.obs_dim, policy.act_dim) != (task.obs_dim, task.act_dim):
        raise ConfigError(f"base {path} takes {policy.obs_dim}-dim observations and gives "
                          f"{policy.act_dim}-dim actions; {task.name} on this arm has "
                          f"{task.obs_dim}/{task.act_dim}: use a policy trained on this setup")
    tb_dir = out_dir / "tb" if cfg["tensorboard"] else None

    def trainer(name: str) -> Trainer:
        values = {"device": cfg["device"], "progress": cfg["progress"], "seed": seed,
                  **cfg["train"][name]}
        return Trainer(build_config(TrainerConfig, values, f"train.{name}"), name=name,
                       log_dir=tb_dir)

    reward_cfg, reward_cls = REWARD_MODELS.from_group(cfg["reward"], "reward", seed=seed)
    source_cfg, source_cls = PREFERENCE_SOURCES.from_group(
        teacher_group(cfg["teacher"], task), "teacher", seed=seed)
    if loop_cfg.scores_per_round and not (reward_cls.uses_scores and source_cls.gives_scores):
        raise ConfigError(
            f"loop.scores_per_round={loop_cfg.scores_per_round} asks for episode scores, but "
            f"reward={cfg['reward']['name']} or teacher={cfg['teacher']['name']} does not use "
            "them: use reward=composite with a scripted teacher or people, or set "
            "loop.scores_per_round=0"
        )
    if cfg["task"] == "none" and source_cls.needs_true_rewards:
        raise ConfigError(f"task=none has no true reward for teacher={cfg['teacher']['name']} "
                          "to judge: use teacher=people (the labelling page), or task=reach")
    query_cfg, query_cls = QUERY_SELECTORS.from_group(cfg["query"], "query")
    refine_cfg, refine_cls = REFINERS.from_group(residual_bound(cfg["refine"], task), "refine")
    store = RunStore(out_dir)
    store.open(run_identity(cfg), task.describe())
    closers = []
    sensor = _sensor(cfg, raw_arm, simulated)
    arm = SafeArm(raw_arm, safety, wrist_sensor=sensor)
    arm.connect()
    closers.append(arm.disconnect)
    try:
        if watchdog and rec["realtime"]:
            arm.start_watchdog()
        vec_env = None
        if cfg["refine"]["name"] == "ppo":  # PPO collects its own episodes, in simulation
            vec_env = task.make_vector_env(int(cfg["num_envs"]), seed)
            closers.append(vec_env.close)
        teleop = _teleop(cfg)
        collector = ArmCollector(
            ArmRolloutConfig(
                episode_steps=task.episode_steps, fps=fps, realtime=bool(rec["realtime"]),
                cameras=list(rec["cameras"]), image_width=int(rec["image_width"]),
                image_height=int(rec["image_height"]), spin_s=float(rec["spin_s"]),
                film_camera=fin["film_camera"] if simulated else None,
                on_protective_stop=fin["on_protective_stop"], repo_id=fin["repo_id"],
                task_string=f"{task.name} policy rollout",
            ),
            arm, teleop, task=arm_task, sensor=sensor,
            camera=raw_arm.render if simulated else None,
            metric_names=task.step_metric_names, events_path=store.path("safety",
                                                                         "events.jsonl"),
            meta=task.episode_meta() if simulated else {}, progress=bool(cfg["progress"]),
        )
        closers.insert(0, collector.close)
        source_args = {}
        if getattr(source_cls, "uses_run_folder", False):
            def dataset_paths() -> dict[str, str]:
                return {i: str(store.path(p).resolve()) for i, p in store.datasets().items()}

            source_args = {"dataset_paths": dataset_paths, "run_name": out_dir.resolve().name}
        source = source_cls(source_cfg, **source_args)
        closers.insert(0, source.close)
        loop = PreferenceLoop(
            loop_cfg, task=task, vec_env=vec_env, expert=None, policy=policy,
            bc_trainer=trainer("bc"),
            reward_model=reward_cls(task.obs_dim, task.act_dim, reward_cfg, trainer("reward")),
            selector=query_cls(query_cfg), source=source,
            refiner=refine_cls(refine_cfg, trainer("refine"), task=task, vec_env=vec_env),
            store=store, progress=bool(cfg["progress"]), tensorboard=bool(cfg["tensorboard"]),
            demos=[], pretrained=True, collector=collector,
            reporter=RoundReporter(ReportConfig(fin["film_camera"] if simulated else None, fps)),
        )
    except BaseException:
        for close in closers:
            close()
        raise
    return loop, closers


def run_finetune_config(cfg: dict, out_dir: Path, overrides: list[str]) -> dict:
    """Run (or resume) the finetuning of resolved config ``cfg`` in ``out_dir``."""
    import yaml

    from robopref.report import format_table

    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "config.yaml").exists():
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (out_dir / "overrides.json").write_text(json.dumps(overrides))
    loop, closers = build_finetune(cfg, out_dir)
    try:
        summary = loop.run()
    finally:
        for close in closers:
            close()
    print(format_table([summary]))
    print(f"results: {out_dir}\nreport: {out_dir / 'report' / 'index.html'}")
    return summary


def run_finetune(cfg) -> dict:
    """The Hydra task: a new run in Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return run_finetune_config(resolved, Path(hydra_cfg.runtime.output_dir),
                               list(hydra_cfg.overrides.task))


def resume_finetune(run_dir: str, overrides: list[str]) -> dict:
    """Continue the run in ``run_dir`` with the config it was started with; ``overrides``
    may restate that config but not change it."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from robopref.cli import CONFIG_MODULE

    out_dir = Path(run_dir)
    if not (out_dir / "overrides.json").is_file() or not (out_dir / "run.json").is_file():
        raise ConfigError(f"{out_dir} is not a robopref finetune run folder (no overrides.json/"
                          "run.json): pass the folder a 'robopref finetune' run wrote")
    original = json.loads((out_dir / "overrides.json").read_text())
    with initialize_config_module(CONFIG_MODULE, version_base=None):
        cfg = compose("finetune", overrides=[*original, *overrides])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return run_finetune_config(resolved, out_dir, original)
