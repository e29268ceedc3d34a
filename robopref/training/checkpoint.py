"""Atomic, versioned checkpoints: trainer state (``torch.save`` payloads, for exact resume) and
model folders (safetensors weights + JSON config) for policies and reward models."""

from __future__ import annotations

import json
import os
import shutil
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


# -- model checkpoints: a folder of safetensors weights + JSON config ------------------------
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_FORMAT_VERSION = 1


def save_model(path: str | Path, kind: str, config: dict, state: dict[str, torch.Tensor]) -> Path:
    """Write a model checkpoint folder ``path/`` (``model.safetensors`` + ``config.json`` with
    ``kind`` and the format version) atomically: it appears under its name only complete."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(staging / WEIGHTS_FILE))
        meta = {"format_version": MODEL_FORMAT_VERSION, "kind": kind, **config}
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_model_config(path: str | Path) -> dict:
    """``config.json`` of the model checkpoint folder at ``path`` (format version checked)."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{path} is not a model checkpoint (no {CONFIG_FILE}): check the path or train first"
        )
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE} is not valid JSON ({exc})") from exc
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')}, this robopref "
            f"reads {MODEL_FORMAT_VERSION}: retrain or use the release that wrote it"
        )
    return meta


def load_model(path: str | Path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a checkpoint folder that must hold a model of ``kind``."""
    from safetensors.torch import load_file

    meta = read_model_config(path)
    if meta.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a '{meta.get('kind')}', not a '{kind}': pass a {kind} checkpoint"
        )
    try:
        state = load_file(str(Path(path) / WEIGHTS_FILE))
    except Exception as exc:
        raise CheckpointError(
            f"weights in {path} are unreadable ({type(exc).__name__}): the checkpoint is "
            "corrupt; delete it and retrain"
        ) from exc
    return meta, state
