"""``robopref record``: a teleoperated recording session, assembled from a resolved config."""

from __future__ import annotations

from pathlib import Path

from robopref.errors import ConfigError
from robopref.registry import build_config


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
    from robopref.hardware.safety import SafeArm, SafetyConfig
    from robopref.recording import Recorder, RecorderConfig

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
        from robopref.envs.peel_task import PEEL_SPLIT_SIZE

        last_seed = record_cfg.seed + record_cfg.num_episodes - 1
        if record_cfg.seed < 0 or last_seed >= PEEL_SPLIT_SIZE:
            # Demos must come from train scenes: validation and test scenes stay unseen.
            raise ConfigError(
                f"record.seed={record_cfg.seed} with {record_cfg.num_episodes} episodes reaches "
                f"scene {last_seed}, outside Peel-v0's train scenes [0, {PEEL_SPLIT_SIZE}): "
                "choose a smaller record.seed"
            )
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
        from robopref.hardware.sim_sensor import SimWrenchSensor

        sensor = SimWrenchSensor(SENSORS.config("sim", sensor_opts), raw_arm)
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
        teleop_cfg = TELEOPS.config("scripted", teleop_opts)
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
        teleop_cfg = TELEOPS.config(teleop_name, teleop_opts)
        teleop = make_teleop(teleop_name, **teleop_opts)

    policy = None
    if cfg.get("policy_checkpoint"):
        # A trained policy drives; the operator takes over while the teleop's intervention
        # flag is set (keyboard space, a SpaceMouse/gamepad enable button).
        from robopref.policies import BCPolicy

        policy = BCPolicy.load(cfg["policy_checkpoint"])
    camera = raw_arm.render if simulated else None
    arm = SafeArm(raw_arm, safety, wrist_sensor=sensor)
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

    from robopref.recording import format_summary

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


