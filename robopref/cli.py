"""The ``robopref`` command. Hydra configs become objects here and nowhere else.

robopref demo [overrides...] [--multirun]   preference loop on a Meta-World task
robopref record [overrides...] [--resume]   teleoperated recording into a LeRobotDataset
robopref report DIR [DIR ...]               table of finished runs (metrics.json)
robopref --help                             this help, with config groups and options
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from pathlib import Path

from robopref.errors import ConfigError, RobopError

CONFIG_MODULE = "robopref.configs"

SUBCOMMANDS = {
    "demo": "BC from noisy scripted demos, then rounds of preference refinement (Hydra overrides)",
    "record": "record teleoperated episodes into a LeRobotDataset (hardware=, teleop=, sensor=)",
    "report": "print the table of finished runs: robopref report runs/ multirun/...",
}
# Subcommands whose arguments are Hydra overrides of configs/<name>.yaml.
HYDRA_SUBCOMMANDS = ("demo", "record")


# -- building objects from configs -----------------------------------------------------
def build_config(config_cls, values: dict, where: str):
    """``config_cls(**values)``, turning unknown or missing keys into one-line errors."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}: valid keys are "
            f"{', '.join(sorted(fields))}"
        )
    return config_cls(**values)


def from_registry(registry: dict, group_cfg: dict, where: str, **overrides):
    """Look up ``group_cfg['name']`` in ``registry`` and build its config dataclass."""
    values = dict(group_cfg)
    name = values.pop("name", None)
    if name not in registry:
        raise ConfigError(f"unknown {where} '{name}': choose one of {', '.join(sorted(registry))}")
    config_cls, impl = registry[name]
    values.update(overrides)
    return build_config(config_cls, values, where), impl


def build_demo(cfg: dict, out_dir: Path):
    """Assemble a ``PreferenceLoop`` and the envs it runs in (close them after) from a
    resolved demo config (a plain dict)."""
    import torch

    from robopref.data import load_episodes
    from robopref.envs import ENVS, ExpertConfig, make_vector_env
    from robopref.loop import LoopConfig, PreferenceLoop
    from robopref.policies import POLICIES
    from robopref.preferences import PREFERENCE_SOURCES, QUERY_SELECTORS
    from robopref.refine import REFINERS
    from robopref.rewards import REWARD_MODELS
    from robopref.rollout import ExpertPolicy
    from robopref.training import Trainer, TrainerConfig

    seed = int(cfg["seed"])
    torch.set_num_threads(int(cfg["torch_threads"]))
    torch.manual_seed(seed)
    tb_dir = out_dir / "tb" if cfg["tensorboard"] else None

    def trainer(name: str) -> Trainer:
        values = {
            "device": cfg["device"],
            "progress": cfg["progress"],
            "seed": seed,
            **cfg["train"][name],
        }
        return Trainer(
            build_config(TrainerConfig, values, f"train.{name}"), name=name, log_dir=tb_dir
        )

    env_cfg, _ = from_registry(ENVS, cfg["env"], "env")
    expert_cfg = build_config(ExpertConfig, cfg["expert"], "expert")
    loop_cfg = build_config(LoopConfig, {**cfg["loop"], "seed": seed}, "loop")
    def env_for(config):
        return make_vector_env(
            config, int(cfg["num_envs"]), seed=seed, asynchronous=bool(cfg["async_envs"])
        )

    vec_env = env_for(env_cfg)
    envs = [vec_env]
    try:
        validation_env = None
        if loop_cfg.validation_episodes > 0:
            # Another draw of the task's goal variations: selection never sees eval goals.
            validation_env = env_for(
                dataclasses.replace(env_cfg, goal_set_seed=env_cfg.goal_set_seed + 1)
            )
            envs.append(validation_env)
        obs_dim = vec_env.single_observation_space.shape[0]
        act_dim = vec_env.single_action_space.shape[0]

        policy_cfg, policy_cls = from_registry(POLICIES, cfg["policy"], "policy")
        policy = policy_cls(obs_dim, act_dim, policy_cfg)
        if cfg.get("policy_checkpoint"):
            policy = policy_cls.load(cfg["policy_checkpoint"])
            if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
                raise ConfigError(
                    f"policy_checkpoint {cfg['policy_checkpoint']} has obs/act dims "
                    f"{policy.obs_dim}/{policy.act_dim}, {env_cfg.task} has {obs_dim}/{act_dim}: "
                    "use a checkpoint trained on this task"
                )
        demos = None
        if cfg.get("demos_path"):
            demos = load_episodes(cfg["demos_path"])
            if (demos[0].obs_dim, demos[0].act_dim) != (obs_dim, act_dim):
                raise ConfigError(
                    f"demos_path {cfg['demos_path']} holds obs/act dims {demos[0].obs_dim}/"
                    f"{demos[0].act_dim}, {env_cfg.task} needs {obs_dim}/{act_dim}: record demos "
                    "on this task"
                )
        reward_cfg, reward_cls = from_registry(REWARD_MODELS, cfg["reward"], "reward", seed=seed)
        query_cfg, query_cls = from_registry(QUERY_SELECTORS, cfg["query"], "query")
        source_cfg, source_cls = from_registry(
            PREFERENCE_SOURCES, cfg["teacher"], "teacher", seed=seed
        )
        refine_cfg, refine_cls = from_registry(REFINERS, cfg["refine"], "refine")

        loop = PreferenceLoop(
            loop_cfg,
            vec_env=vec_env,
            task=env_cfg.task,
            max_steps=env_cfg.max_episode_steps,
            fps=env_cfg.fps,
            expert=ExpertPolicy(env_cfg.task, expert_cfg, vec_env.num_envs, seed=seed),
            policy=policy,
            bc_trainer=trainer("bc"),
            reward_model=reward_cls(obs_dim, act_dim, reward_cfg, trainer("reward")),
            selector=query_cls(query_cfg),
            source=source_cls(source_cfg),
            refiner=refine_cls(refine_cfg, trainer("refine")),
            out_dir=out_dir,
            progress=bool(cfg["progress"]),
            tensorboard=bool(cfg["tensorboard"]),
            demos=demos,
            pretrained=bool(cfg.get("policy_checkpoint")),
            validation_env=validation_env,
        )
    except BaseException:
        for env in envs:
            env.close()
        raise
    return loop, envs


def run_demo(cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from robopref.report import format_table, plot_run

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    loop, envs = build_demo(resolved, out_dir)
    try:
        summary = loop.run()
    finally:
        for env in envs:
            env.close()
    plot_run(summary, out_dir)
    print(format_table([summary]))
    print(f"results: {out_dir}")
    return summary


# -- record ------------------------------------------------------------------------------
def _teleop_help(name: str, config) -> str:
    """The device's controls, printed before a session."""
    if name == "keyboard":
        return (
            "keyboard: space engages/disengages; w/s a/d r/f move +-x/y/z, i/k j/l u/o rotate "
            "+-rx/ry/rz;\n  Enter save, Backspace or x discard, n re-record, q quit"
        )
    if name == "scripted":
        return "scripted operator: saves at the time limit (or save_every), no keys needed"
    buttons = ", ".join(f"button {i} {b}" for i, b in sorted(config.buttons.items()))
    enable = config.enable_button
    hold = "always enabled" if enable is None else f"hold button {enable} to move"
    return f"{name}: {hold}; {buttons}; Ctrl-C quits"


def build_record(cfg: dict):
    """From a resolved record config (a plain dict): a ``Recorder``, the connected safe arm
    it commands (disconnect it after), and the teleop device's help line."""
    from robopref.hardware import SENSORS, TELEOPS, make_arm, make_sensor, make_teleop
    from robopref.hardware import build_config as device_config
    from robopref.hardware.safety import SafeArm, SafetyConfig
    from robopref.record import Recorder, RecorderConfig

    safety = build_config(SafetyConfig, cfg["safety"], "safety")
    record_cfg = build_config(RecorderConfig, {**cfg["record"], "safety": safety}, "record")

    hardware = dict(cfg["hardware"])
    arm_name = hardware.pop("name", None)
    watchdog = bool(hardware.pop("watchdog", False))
    raw_arm = make_arm(arm_name, **hardware)
    simulated = arm_name == "sim"  # it renders, hosts the peel task and feeds sensor=sim

    task, peel_cfg = None, None
    if cfg["task"] == "peel":
        if not simulated:
            raise ConfigError(f"task=peel needs hardware=sim, got hardware={arm_name}")
        from robopref.envs.peel import PeelConfig, PeelTask

        peel_cfg = build_config(PeelConfig, {"control_hz": record_cfg.fps, **cfg["peel"]}, "peel")
        task = PeelTask(peel_cfg)
    elif cfg["task"] not in ("none", None):
        raise ConfigError(f"unknown task '{cfg['task']}': choose peel or none")

    sensor_opts = dict(cfg["sensor"])
    sensor_name = sensor_opts.pop("name", None)
    sensor = None
    if sensor_name == "sim":
        if not simulated:
            raise ConfigError(
                f"sensor=sim reads the simulated arm: use hardware=sim, not {arm_name}"
            )
        from robopref.hardware.sim import SimWrenchSensor

        sensor = SimWrenchSensor(device_config(SENSORS, "sensor", "sim", sensor_opts), raw_arm)
    elif sensor_name != "none":
        sensor = make_sensor(sensor_name, **sensor_opts)

    teleop_opts = dict(cfg["teleop"])
    teleop_name = teleop_opts.pop("name", None)
    if teleop_name == "scripted":
        from robopref.hardware.teleop import ScriptedTeleop

        policy_name = teleop_opts.pop("policy", "none")
        expert_opts = teleop_opts.pop("expert", {}) or {}
        if teleop_opts.get("save_every") is None:
            # The operator ends every episode itself, so its policy restarts in step.
            teleop_opts["save_every"] = record_cfg.max_steps
        teleop_cfg = device_config(TELEOPS, "teleop", "scripted", teleop_opts)
        policy = None
        if policy_name == "peel_expert":
            if task is None:
                raise ConfigError("teleop.policy=peel_expert drives the peel task: add task=peel")
            from robopref.envs.peel import PeelExpert, PeelExpertConfig

            expert_cfg = build_config(PeelExpertConfig, expert_opts, "teleop.expert")
            policy = PeelExpert(expert_cfg, peel_cfg, seed=record_cfg.seed)
        elif policy_name not in ("none", None):
            raise ConfigError(f"unknown teleop.policy '{policy_name}': choose peel_expert or none")
        teleop = ScriptedTeleop(teleop_cfg, policy)
    else:
        teleop_cfg = device_config(TELEOPS, "teleop", teleop_name, teleop_opts)
        teleop = make_teleop(teleop_name, **teleop_opts)

    policy = None
    if cfg.get("policy_checkpoint"):
        # A trained policy drives; the operator takes over while the teleop's intervention
        # flag is set (keyboard space, a SpaceMouse/gamepad enable button).
        from robopref.policies import BCPolicy

        policy = BCPolicy.load(cfg["policy_checkpoint"])
    camera = raw_arm.render if simulated else None
    arm = SafeArm(raw_arm, safety)
    recorder = Recorder(
        record_cfg,
        arm,
        teleop,
        sensor=sensor,
        task=task,
        camera=camera,
        policy=policy,
        progress=bool(cfg["progress"]),
    )
    arm.connect()
    try:
        if watchdog and record_cfg.realtime:
            arm.start_watchdog()
    except BaseException:
        arm.disconnect()
        raise
    return recorder, arm, _teleop_help(teleop_name, teleop_cfg)


def _translate_resume(args: list[str]) -> list[str]:
    """``--resume`` is shorthand for the override ``record.resume=true``."""
    return ["record.resume=true" if a == "--resume" else a for a in args]


def run_record(cfg) -> dict:
    import json

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from robopref.record import format_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    recorder, arm, teleop_help = build_record(OmegaConf.to_container(cfg, resolve=True))
    print(recorder.help_text())
    print(teleop_help)
    try:
        summary = recorder.run()
    finally:
        arm.disconnect()
    (out_dir / "recording.json").write_text(json.dumps(summary, indent=1))
    print(format_summary(summary))
    print(f"dataset: {summary['root']}\nsession: {out_dir}")
    return summary


# -- entry point -------------------------------------------------------------------------
def _config_groups() -> dict[str, list[str]]:
    root = resources.files(CONFIG_MODULE)
    groups = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("_"):
            groups[entry.name] = sorted(
                p.name.removesuffix(".yaml") for p in entry.iterdir() if p.name.endswith(".yaml")
            )
    return groups


def print_help() -> None:
    print("usage: robopref SUBCOMMAND [key=value ...] [--multirun]\n")
    print("subcommands:")
    for name, text in SUBCOMMANDS.items():
        print(f"  {name:<8} {text}")
    print("\nconfig groups (pick with group=option):")
    for group, options in _config_groups().items():
        print(f"  {group:<8} {', '.join(options)}")
    print(
        "\nexamples:\n"
        "  robopref demo env.task=button-press-v3 teacher=mistake\n"
        "  robopref demo --multirun seed=0,1,2\n"
        "  robopref demo loop.rounds=5 reward.members=5 query=entropy\n"
        "  robopref demo --cfg job        # show the composed config and exit\n"
        "  robopref report multirun/      # table over a sweep\n"
        "  robopref record hardware=sim teleop=scripted sensor=sim task=peel "
        "record.root=data/peel\n"
        "  robopref record hardware=ur hardware.host=192.168.1.10 teleop=spacemouse "
        "sensor=netft --resume"
    )


def _precheck_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose once up front so a bad override fails with one line, not a Hydra trace."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    plain = [o for o in overrides if not o.startswith("-") and not o.startswith("hydra")]
    try:
        # A sweep (seed=0,1,2) cannot be composed; checking its first value checks the key.
        parsed = OverridesParser.create().parse_overrides(plain)
        single = [
            f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override()
            else o.input_line
            for o in parsed
        ]
        with initialize_config_module(CONFIG_MODULE, version_base=None):
            compose(config_name, overrides=single)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"bad override ({first}): check the key against 'robopref {config_name} --cfg job', "
            "prefix new keys with '+'"
        ) from None


def _hydra_task(config_name: str, fn):
    import hydra

    def task(cfg):
        try:
            return fn(cfg)
        except RobopError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return hydra.main(
        config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base=None
    )(task)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help()
        return
    sub, rest = argv[0], argv[1:]
    try:
        if sub == "report":
            from robopref.report import format_table, load_summaries

            if not rest:
                raise ConfigError("report needs run folders: robopref report runs/ multirun/")
            print(format_table(load_summaries(rest)))
            return
        if sub not in HYDRA_SUBCOMMANDS:
            raise ConfigError(f"unknown subcommand '{sub}': choose one of {', '.join(SUBCOMMANDS)}")
        if sub == "record":
            rest = _translate_resume(rest)
        _precheck_overrides(sub, rest)
    except RobopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _silence_third_party_warnings()
    sys.argv = [f"robopref {sub}", *rest]
    _hydra_task(sub, run_demo if sub == "demo" else run_record)()


def _silence_third_party_warnings() -> None:
    import logging
    import warnings

    # lerobot logs its video codec choice at INFO for every dataset, even without videos.
    logging.getLogger("lerobot").setLevel(logging.WARNING)

    # Meta-World's scripted experts warn on every clipped action; gymnasium about bounds.
    warnings.filterwarnings("ignore", module=r"metaworld\..*")
    warnings.filterwarnings("ignore", module=r"gymnasium\..*")


if __name__ == "__main__":
    main()
