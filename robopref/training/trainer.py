"""The one Trainer: every torch model in robopref (policies, reward models, residuals) trains here.

It owns device placement, bf16 autocast on CUDA, gradient clipping, batch sampling from
in-memory tensors, TensorBoard logging, a progress bar, and checkpoints that resume exactly:
a run interrupted after ``k`` steps and resumed ends with the same parameters as an
uninterrupted run (same device, same seed).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from robopref.errors import CheckpointError, ConfigError
from robopref.training.checkpoint import load_checkpoint, load_state_dict_checked, save_checkpoint

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def select_device(requested: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{requested}' asked for but CUDA is not available: use 'auto'")
    return device


@dataclass
class TrainerConfig:
    """How to optimise a model.

    Attributes:
        steps: gradient steps per ``fit`` call.
        batch_size: samples per step (drawn uniformly with replacement).
        lr: Adam learning rate (the peak, under a schedule).
        lr_schedule: ``"constant"``, or ``"cosine"``: decays from ``lr`` to 0 over each
            ``fit`` call, so a fit ends at converged weights instead of wherever the last
            noisy step of a constant rate left them.
        weight_decay: AdamW weight decay.
        grad_clip: max global gradient norm; ``None`` disables clipping.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        amp: bf16 autocast when on CUDA (ignored on CPU).
        log_every: steps between TensorBoard scalars.
        checkpoint_every: steps between checkpoints (0: only at the end of ``fit``).
        progress: show a progress bar.
        seed: seeds batch sampling.
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    device: str = "auto"
    amp: bool = True
    log_every: int = 50
    checkpoint_every: int = 0
    progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError("trainer steps must be >= 0 and batch_size >= 1")
        if self.log_every < 1 or self.checkpoint_every < 0:
            raise ConfigError("trainer log_every must be >= 1 and checkpoint_every >= 0")
        if not self.lr > 0:
            raise ConfigError(f"trainer lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"trainer lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got "
                f"'{self.lr_schedule}'"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError("trainer grad_clip must be > 0 or null")


LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(config: TrainerConfig, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of a ``total``-step fit."""
    if config.lr_schedule == "cosine" and total > 0:
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    return config.lr


class Trainer:
    """Fits ``model`` to minimise ``loss_fn(model, batch)`` over batches drawn from ``data``.

    ``data`` maps names to tensors sharing their first dimension ``N``; a batch holds the
    same rows of each. With ``checkpoint_path`` set, ``fit`` resumes from that file when it
    exists (same model shape required) and writes it as it goes.
    """

    def __init__(
        self,
        config: TrainerConfig,
        name: str = "model",
        log_dir: str | Path | None = None,
        checkpoint_path: str | Path | None = None,
    ):
        self.config = config
        self.name = name
        self.device = select_device(config.device)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self._writer = None
        self.global_step = 0  # across fit calls, for logging

    @property
    def use_amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    def autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _tensorboard(self):
        if self._writer is None and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir / self.name))
        return self._writer

    def fit(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: dict[str, torch.Tensor],
        steps: int | None = None,
    ) -> dict[str, float]:
        """Train for ``steps`` (default ``config.steps``) and return the last step's metrics."""
        cfg = self.config
        total = cfg.steps if steps is None else steps
        sizes = {k: len(v) for k, v in data.items()}
        if not sizes or len(set(sizes.values())) != 1 or next(iter(sizes.values())) == 0:
            raise ValueError(f"training data must be non-empty tensors of one length N: {sizes}")
        n = next(iter(sizes.values()))
        model.to(self.device)
        data = {k: v.to(self.device) for k, v in data.items()}
        # Frozen parameters (a residual's base) never enter the optimiser, so no optimiser
        # state or update can reach them.
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Offset by steps already taken so repeated fits (reward rounds) draw fresh batches.
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed + self.global_step)
        step = 0
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            step = self._resume(model, optimizer, generator)
            self.global_step = max(self.global_step, step)
            if step > total:
                raise CheckpointError(
                    f"checkpoint {self.checkpoint_path} is at step {step}, past the {total} "
                    "steps asked for: raise steps or start a new run folder"
                )
        model.train()
        metrics: dict[str, float] = {}
        bar = tqdm(
            total=total,
            initial=step,
            desc=f"train {self.name}",
            disable=not cfg.progress,
            leave=False,
            dynamic_ncols=True,
        )
        writer = self._tensorboard()
        while step < total:
            idx = torch.randint(0, n, (cfg.batch_size,), generator=generator).to(self.device)
            batch = {k: v[idx] for k, v in data.items()}
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg, step, total)
            with self.autocast():
                loss, metrics = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{self.name} loss became {loss.item()} at step {step}: lower the learning "
                    "rate or check the data for outliers"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                metrics = {**metrics, "grad_norm": float(grad_norm)}
            optimizer.step()
            step += 1
            self.global_step += 1
            metrics = {"loss": float(loss.detach()), **metrics}
            if writer is not None and (step % cfg.log_every == 0 or step == total):
                for key, value in metrics.items():
                    if math.isfinite(value):
                        writer.add_scalar(f"{self.name}/{key}", value, self.global_step)
            if step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            bar.update(1)
            periodic = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if self.checkpoint_path is not None and periodic:
                self._save(model, optimizer, generator, step)
        bar.close()
        if self.checkpoint_path is not None:
            self._save(model, optimizer, generator, step)
        if writer is not None:
            writer.flush()
        model.eval()
        return metrics

    def _save(self, model, optimizer, generator, step: int) -> None:
        save_checkpoint(
            self.checkpoint_path,
            {
                "kind": "trainer",
                "model_class": type(model).__qualname__,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "step": step,
                "config": json.loads(json.dumps(self.config.__dict__)),
            },
        )

    def _resume(self, model, optimizer, generator) -> int:
        payload = load_checkpoint(self.checkpoint_path)
        if payload.get("kind") != "trainer":
            raise CheckpointError(
                f"{self.checkpoint_path} is not a trainer checkpoint: point checkpoint_path "
                "elsewhere"
            )
        load_state_dict_checked(model, payload["model"], self.checkpoint_path)
        optimizer.load_state_dict(payload["optimizer"])
        generator.set_state(payload["generator"])
        return int(payload["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
