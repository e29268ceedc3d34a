"""The one Trainer and checkpoint I/O."""

from robopref.training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    MODEL_FORMAT_VERSION,
    load_checkpoint,
    load_model,
    load_state_dict_checked,
    read_model_config,
    save_checkpoint,
    save_model,
)
from robopref.training.trainer import Trainer, TrainerConfig, scheduled_lr, select_device

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "MODEL_FORMAT_VERSION",
    "Trainer",
    "TrainerConfig",
    "load_checkpoint",
    "load_model",
    "load_state_dict_checked",
    "read_model_config",
    "save_checkpoint",
    "save_model",
    "scheduled_lr",
    "select_device",
]
