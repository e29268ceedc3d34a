"""Every shipped config option composes and becomes a validated config object."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from robopref.cli import _config_groups
from robopref.envs import TASKS
from robopref.errors import ConfigError
from robopref.loop import LoopConfig
from robopref.policies import POLICIES
from robopref.preferences import PREFERENCE_SOURCES, QUERY_SELECTORS, TEACHER_PRESETS
from robopref.refine import REFINERS
from robopref.registry import build_config
from robopref.rewards import REWARD_MODELS
from robopref.training import TrainerConfig

REGISTRIES = {
    "env": TASKS,
    "policy": POLICIES,
    "reward": REWARD_MODELS,
    "query": QUERY_SELECTORS,
    "teacher": PREFERENCE_SOURCES,
    "refine": REFINERS,
}
# Groups of `robopref record` (and finetune); tests/test_record_cli.py builds each option.
RECORD_GROUPS = {"hardware", "sensor", "teleop", "safety"}


def composed(*overrides: str, config_name: str = "demo") -> dict:
    with initialize_config_module("robopref.configs", version_base=None):
        cfg = compose(config_name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=False)


def test_configs_ship_as_package_data():
    root = resources.files("robopref.configs")
    assert root.joinpath("demo.yaml").is_file()
    assert set(_config_groups()) == set(REGISTRIES) | RECORD_GROUPS
    assert root.joinpath("record.yaml").is_file()


@pytest.mark.parametrize(
    ("group", "option"),
    [
        (g, o)
        for g, options in sorted(_config_groups().items())
        if g not in RECORD_GROUPS
        for o in options
    ],
)
def test_every_option_builds_its_config(group, option):
    cfg = composed(f"{group}={option}")
    values = dict(cfg[group])
    if group == "teacher":
        values["reward_scale"] = 10.0  # the CLI fills it from the task
    if group == "policy":
        values.update(action_low=-1.0, action_high=1.0)  # the CLI fills them from the task
    config, impl = REGISTRIES[group].from_group(values, group)
    assert config.__class__.__name__.endswith("Config")
    if group == "env":
        task = impl(config)  # the task object builds (splits, expert knobs)
        assert len(task.variations("test")) >= 100


def test_teacher_yaml_presets_match_the_library_presets():
    for name, preset in TEACHER_PRESETS.items():
        values = {**composed(f"teacher={name}")["teacher"], "reward_scale": 1.0}
        config, _ = PREFERENCE_SOURCES.from_group(values, "t")
        assert config == preset, name


def test_issue_example_override_composes():
    cfg = composed("env.task=button-press-v3", "teacher=mistake")
    env_cfg, _ = TASKS.from_group(cfg["env"], "env")
    teacher_cfg, _ = PREFERENCE_SOURCES.from_group({**cfg["teacher"], "reward_scale": 10}, "t")
    assert env_cfg.task == "button-press-v3" and teacher_cfg.mistake_prob == 0.1


def test_loop_and_trainer_sections_build():
    cfg = composed()
    build_config(LoopConfig, cfg["loop"], "loop")
    for name, values in cfg["train"].items():
        build_config(TrainerConfig, values, f"train.{name}")


def test_default_label_budget_is_at_most_500():
    loop = build_config(LoopConfig, composed()["loop"], "loop")
    assert loop.rounds * loop.queries_per_round <= 500


def test_unknown_registry_name_is_rejected():
    with pytest.raises(ConfigError, match="unknown query selector 'psychic'"):
        QUERY_SELECTORS.from_group({"name": "psychic"}, "query")
    with pytest.raises(ConfigError, match="did you mean disagreement"):
        QUERY_SELECTORS.from_group({"name": "disagrement"}, "query")


def test_rwr_anchor_is_what_each_configs_committed_results_used():
    """The demo refines without an anchor to BC (the yaml and the library agree); transfer and
    finetune keep 0.1, the value their committed results were measured with."""
    from robopref.refine import RWRConfig

    assert composed()["refine"]["anchor_weight"] == RWRConfig().anchor_weight == 0.0
    assert composed(config_name="transfer")["refine"]["anchor_weight"] == 0.1
    assert composed(config_name="finetune")["refine"]["anchor_weight"] == 0.1
