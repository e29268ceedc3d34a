"""Atomic, versioned checkpoint files (``torch.save`` payloads)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from robopref.errors import CheckpointError

CHECKPOINT_FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` (plus the format version) to ``path`` via a temp file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path or train first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}): it is corrupt or not a "
            "robopref checkpoint; delete it and retrain"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"checkpoint {path} has format version {found}, this robopref reads "
            f"{CHECKPOINT_FORMAT_VERSION}: retrain or use the release that wrote it"
        )
    return payload


def load_state_dict_checked(model: nn.Module, state: dict, source: str | Path) -> None:
    """Load ``state`` into ``model``, failing with one line when shapes or names differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        detail = "; ".join(
            mismatched[:2]
            + ([f"missing {missing[:3]}"] if missing else [])
            + ([f"unexpected {unexpected[:3]}"] if unexpected else [])
        )
        raise CheckpointError(
            f"checkpoint {source} was saved from a model of another shape ({detail}): build the "
            "model with the config it was trained with, or retrain"
        )
    model.load_state_dict(state)
