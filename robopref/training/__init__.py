"""The one Trainer and checkpoint I/O."""

from robopref.training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
)
from robopref.training.trainer import Trainer, TrainerConfig, select_device

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "Trainer",
    "TrainerConfig",
    "load_checkpoint",
    "load_state_dict_checked",
    "save_checkpoint",
    "select_device",
]
