"""``robopref reward train labels=URL [overrides]``: a reward model trained from a label
database alone (``configs/train_reward.yaml``), e.g. in another process or on another machine
than the one that collected the labels; see :mod:`robopref.label.train`.

Writes into the output folder (``hydra.run.dir``): ``config.yaml``, ``reward/`` (the
checkpoint), ``metrics.json`` (accuracies, label counts, agreement) and the train/held-out
split of the labelled pairs.
"""

from __future__ import annotations

from pathlib import Path

from robopref.errors import ConfigError
from robopref.registry import build_config

ACTIONS = ("train",)


def train_reward_config(cfg: dict, out_dir: Path) -> dict:
    """Train the reward of resolved config ``cfg`` (a plain dict) into ``out_dir``."""
    import torch
    import yaml

    from robopref.data.atomic import write_bytes_atomic
    from robopref.label.export import METHODS
    from robopref.label.train import train_from_labels
    from robopref.rewards import REWARD_MODELS
    from robopref.training import Trainer, TrainerConfig

    if not cfg.get("labels"):
        raise ConfigError("no label database given: robopref reward train "
                          "labels=sqlite:///labels.db (or a path, or a PostgreSQL URL)")
    if cfg["aggregation"] not in METHODS:
        raise ConfigError(f"aggregation must be one of {', '.join(METHODS)}, got "
                          f"'{cfg['aggregation']}'")
    if not 0 <= float(cfg["heldout_fraction"]) < 1:
        raise ConfigError(f"heldout_fraction must lie in [0, 1), got {cfg['heldout_fraction']}")
    if int(cfg["min_answers"]) < 1:
        raise ConfigError(f"min_answers must be >= 1, got {cfg['min_answers']}")
    seed = int(cfg["seed"])
    torch.set_num_threads(int(cfg["torch_threads"]))
    torch.manual_seed(seed)
    # Built before any data is read, so a bad key fails at once.
    reward_cfg, reward_cls = REWARD_MODELS.from_group(cfg["reward"], "reward", seed=seed)
    values = {"device": cfg["device"], "progress": cfg["progress"], "seed": seed,
              **cfg["train"]["reward"]}
    trainer_cfg = build_config(TrainerConfig, values, "train.reward")

    def make_model(obs_dim: int, act_dim: int):
        return reward_cls(obs_dim, act_dim, reward_cfg, Trainer(trainer_cfg, name="reward"))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False).encode())
    metrics = train_from_labels(
        cfg["labels"], make_model, out_dir, project=cfg["project"],
        aggregation=cfg["aggregation"], min_answers=int(cfg["min_answers"]),
        roots=list(cfg["datasets"] or []), heldout_fraction=float(cfg["heldout_fraction"]),
        seed=seed, log=lambda m: print(m, flush=True),
    )

    def shown(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    print(f"reward accuracy on the labels: train {shown(metrics['train_accuracy'])}, "
          f"held-out {shown(metrics['heldout_accuracy'])} "
          f"({metrics['pairs']['heldout']} pairs); true-return order: held-out "
          f"{shown(metrics['heldout_true_accuracy'])}")
    print(f"results: {out_dir}")
    return metrics


def split_action(rest: list[str]) -> list[str]:
    """The Hydra overrides after ``robopref reward train``; one line for anything else."""
    if not rest or rest[0] not in ACTIONS:
        raise ConfigError("reward takes an action: robopref reward train labels=URL "
                          "[project=NAME] [reward=gaussian] [overrides]")
    return rest[1:]


def run_train_reward(cfg) -> dict:
    """The Hydra task: train into Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    return train_reward_config(OmegaConf.to_container(cfg, resolve=True), out_dir)
