"""The ``robopref`` command. Hydra configs become objects here and nowhere else.

robopref demo [overrides...] [--multirun]   preference loop on any task (env=metaworld|peel)
robopref demo --resume RUN_DIR              continue a killed demo run from its last step
robopref transfer source=T target=T [...]   cross-task preference transfer (PEARL), scored
robopref transfer --resume RUN_DIR          continue a killed transfer run
robopref record [overrides...] [--resume]   teleoperated recording into a LeRobotDataset
robopref finetune base=DIR [overrides...]   preference finetuning rounds on an arm (--resume DIR)
robopref report DIR [DIR ...]               table of finished runs, by task and config
robopref migrate-dataset DIR [DIR ...]      write version-2 sidecars into older datasets
robopref label serve|annotator|progress     labelling server and its database (--db URL)
robopref label simulate|export|import       simulated annotators; Parquet copies of labels
robopref reward train labels=URL [...]      a reward model from a label database alone
robopref --help                             this help, with config groups and options
"""

from __future__ import annotations

import sys
from importlib import resources

from robopref.errors import ConfigError, RobopError

CONFIG_MODULE = "robopref.configs"

SUBCOMMANDS = {
    "demo": "BC from scripted demos, then rounds of preference refinement (--resume RUN_DIR)",
    "transfer": "label a target task from a source task by GW (source=, target=, --resume DIR)",
    "record": "record teleoperated episodes into a LeRobotDataset (hardware=, teleop=, sensor=)",
    "finetune": "rounds on an arm: rollouts, pair labels + episode scores, residual, report "
                "(hardware=, task=, base=DIR, --resume RUN_DIR)",
    "report": "print the table of finished runs: robopref report runs/ multirun/...",
    "migrate-dataset": "give datasets written by robopref 0.1 a version-2 sidecar (stable id)",
    "label": "labelling server and database: serve, annotator add NAME [--admin], progress, "
             "simulate --token T, export --parquet FILE, import FILE",
    "reward": "train a reward model from a label database alone: reward train labels=URL",
}
# Subcommands whose arguments are Hydra overrides of configs/<name>.yaml.
HYDRA_SUBCOMMANDS = ("demo", "record", "transfer", "reward", "finetune")
# Hydra's own flags whose value is the next argument (robopref demo --cfg job).
HYDRA_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-name", "-cn",
                          "--config-path", "-cp", "--config-dir", "-cd")
# Their config files where the name differs (configs/reward/ is the reward model group).
HYDRA_CONFIG_NAMES = {"reward": "train_reward"}


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
        print(f"  {name:<16} {text}")
    print("\nconfig groups (pick with group=option):")
    for group, options in _config_groups().items():
        print(f"  {group:<8} {', '.join(options)}")
    print(
        "\nexamples:\n"
        "  robopref demo env.task=button-press-v3 teacher=mistake\n"
        "  robopref demo --multirun seed=0,1,2\n"
        "  robopref demo env=peel loop.rounds=2          # the same loop on the force arm\n"
        "  robopref demo --resume runs/<run>             # continue a killed run\n"
        "  robopref demo loop.rounds=5 reward.members=5 query=entropy\n"
        "  robopref demo --cfg job        # show the composed config and exit\n"
        "  robopref report multirun/      # table over a sweep\n"
        "  robopref transfer source=door-open-v3 target=door-close-v3 refinement.enabled=false\n"
        "  robopref record hardware=sim teleop=scripted sensor=sim task=peel "
        "record.root=data/peel\n"
        "  robopref record hardware=ur hardware.host=192.168.1.10 teleop=spacemouse "
        "sensor=netft --resume\n"
        "  robopref finetune hardware=sim task=peel safety=peel_cell base=DIR  # simulated arm"
    )


def _precheck_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose once up front so a bad override fails with one line, not a Hydra trace."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    plain, skip_value = [], False
    for o in overrides:
        if skip_value:  # the value of a Hydra flag (--cfg job), not an override
            skip_value = False
            continue
        if o in HYDRA_FLAGS_WITH_VALUE:
            skip_value = True
        elif not o.startswith("-") and not o.startswith("hydra"):
            plain.append(o)
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
        if sub == "migrate-dataset":
            from robopref.data import migrate_dataset

            if not rest:
                raise ConfigError(
                    "migrate-dataset needs dataset folders: robopref migrate-dataset DIR"
                )
            for folder in rest:
                print(f"{folder}: dataset id {migrate_dataset(folder)}")
            return
        if sub == "label":
            from robopref.label.cli import main as label_main

            label_main(rest)  # exits 2 with one line on bad input, like the rest
            return
        if sub == "demo" and "--resume" in rest:
            at = rest.index("--resume")
            if at + 1 >= len(rest):
                raise ConfigError("--resume needs the run folder: robopref demo --resume RUN_DIR")
            run_dir, overrides = rest[at + 1], rest[:at] + rest[at + 2 :]
            _precheck_overrides(sub, overrides)
            _silence_third_party_warnings()
            from robopref.cli.demo import resume_demo

            resume_demo(run_dir, overrides)
            return
        if sub == "finetune" and "--resume" in rest:
            at = rest.index("--resume")
            if at + 1 >= len(rest):
                raise ConfigError("--resume needs the run folder: robopref finetune --resume "
                                  "RUN_DIR")
            run_dir, overrides = rest[at + 1], rest[:at] + rest[at + 2 :]
            _precheck_overrides(sub, overrides)
            _silence_third_party_warnings()
            from robopref.cli.finetune import resume_finetune

            resume_finetune(run_dir, overrides)
            return
        if sub == "transfer" and "--resume" in rest:
            at = rest.index("--resume")
            if at + 1 >= len(rest) or len(rest) != 2:
                raise ConfigError("--resume takes only the run folder: robopref transfer "
                                  "--resume RUN_DIR")
            _silence_third_party_warnings()
            from robopref.cli.transfer import resume_transfer

            resume_transfer(rest[at + 1])
            return
        if sub not in HYDRA_SUBCOMMANDS:
            raise ConfigError(f"unknown subcommand '{sub}': choose one of {', '.join(SUBCOMMANDS)}")
        if sub == "record":
            from robopref.cli.record import _translate_resume

            rest = _translate_resume(rest)
        if sub == "reward":
            from robopref.cli.reward import split_action

            rest = split_action(rest)
        _precheck_overrides(HYDRA_CONFIG_NAMES.get(sub, sub), rest)
    except RobopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _silence_third_party_warnings()
    sys.argv = [f"robopref {sub}", *rest]
    if sub == "demo":
        from robopref.cli.demo import run_demo as run
    elif sub == "transfer":
        from robopref.cli.transfer import run_transfer as run
    elif sub == "reward":
        from robopref.cli.reward import run_train_reward as run
    elif sub == "finetune":
        from robopref.cli.finetune import run_finetune as run
    else:
        from robopref.cli.record import run_record as run
    _hydra_task(HYDRA_CONFIG_NAMES.get(sub, sub), run)()


def _silence_third_party_warnings() -> None:
    import logging
    import warnings

    # lerobot logs its video codec choice at INFO for every dataset, even without videos.
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    # Alembic logs each plugin and migration context at INFO whenever a label database opens.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    # Meta-World's scripted experts warn on every clipped action; gymnasium about bounds.
    warnings.filterwarnings("ignore", module=r"metaworld\..*")
    warnings.filterwarnings("ignore", module=r"gymnasium\..*")


if __name__ == "__main__":
    main()
