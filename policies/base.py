"""The policy contracts: ``Policy`` (anything that acts: scripted experts, exploration wrappers)
and ``TrainablePolicy`` (what refiners, averaging and checkpoints work with)."""

from __future__ import annotations

import copy
import itertools
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from robopref.errors import CheckpointError
from robopref.training import load_model, load_state_dict_checked, read_model_config, save_model


class Policy(ABC):
    """Maps a batch of observations to actions.

    ``act(obs)``: ``obs (B, obs_dim)`` -> ``actions (B, act_dim)`` float32, environment units.
    ``begin_episodes(n)`` is called when ``n`` parallel episodes start (stateful policies
    reset there).
    """

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def begin_episodes(self, n: int) -> None:  # noqa: B027  (stateless policies need nothing)
        pass


class TrainablePolicy(nn.Module, Policy):
    """A torch policy that imitation and refinement can train.

    Contract:
        ``forward(obs (B, obs_dim)) -> (B, act_dim)``: the mean action (environment units),
            differentiable; refiners anchor it to a base policy's.
        ``imitation_loss(obs, act) -> (B,)``: per-sample imitation loss of the given actions;
            refiners weight it per sample (reward-weighted regression, RA-BC-style weights).
        ``clone()``: an independent copy (refiners never modify their input).
        ``save(path)`` / ``load(path)``: a checkpoint folder (safetensors weights + JSON config
            + format version). A policy that sits on a frozen base (``base_policy()``) saves
            only its own weights and names the base's checkpoint by relative path, so the
            pair moves together; the base must have been saved first.
        ``config_dict()`` / ``from_config(config, obs_dim, act_dim, base)``: rebuild it.
    """

    kind: ClassVar[str]
    obs_dim: int
    act_dim: int

    @abstractmethod
    def forward(self, obs: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def config_dict(self) -> dict: ...

    @classmethod
    @abstractmethod
    def from_config(
        cls, config: dict, obs_dim: int, act_dim: int, base: TrainablePolicy | None
    ) -> TrainablePolicy: ...

    def base_policy(self) -> TrainablePolicy | None:
        """The frozen policy this one sits on (``None`` for a whole policy). It must be held
        as the submodule ``self.base``."""
        return None

    def weighted_imitation_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_sample = self.imitation_loss(obs, actions)
        if weight is None:
            return per_sample.mean()
        return (weight * per_sample).sum() / weight.sum().clamp_min(1e-12)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        device = next(itertools.chain(self.parameters(), self.buffers())).device
        out = self(torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device))
        return out.cpu().numpy().astype(np.float32)

    def clone(self) -> TrainablePolicy:
        copied = copy.deepcopy(self)
        copied.checkpoint_path = getattr(self, "checkpoint_path", None)
        return copied

    def own_state(self) -> dict[str, torch.Tensor]:
        """The state this policy's checkpoint stores (the base's weights live in its own)."""
        state = self.state_dict()
        if self.base_policy() is None:
            return state
        return {k: v for k, v in state.items() if not k.startswith("base.")}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        base = self.base_policy()
        base_ref = None
        if base is not None:
            base_path = getattr(base, "checkpoint_path", None)
            if base_path is None:
                raise CheckpointError(
                    "this policy's base was never saved: save the base policy first, so the "
                    "checkpoint can name it"
                )
            base_ref = os.path.relpath(Path(base_path).resolve(), path.resolve().parent)
        config = {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": self.config_dict(),
            "base": base_ref,
        }
        save_model(path, self.kind, config, self.own_state())
        self.checkpoint_path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainablePolicy:
        path = Path(path)
        meta, state = load_model(path, cls.kind)
        base = None
        if meta.get("base"):
            base_path = (path.resolve().parent / meta["base"]).resolve()
            if not (base_path / "config.json").is_file():
                raise CheckpointError(
                    f"checkpoint {path} sits on base policy {meta['base']} (resolved to "
                    f"{base_path}), which is missing: move the base checkpoint along with it"
                )
            base = load_policy(base_path)
        policy = cls.from_config(meta["config"], meta["obs_dim"], meta["act_dim"], base)
        full = policy.state_dict()
        full.update(state)
        load_state_dict_checked(policy, full, path)
        policy.checkpoint_path = path
        return policy


def load_policy(path: str | Path) -> TrainablePolicy:
    """Any trainable policy's checkpoint folder, by the ``kind`` it names."""
    from robopref.policies import POLICIES

    meta = read_model_config(path)
    kind = meta.get("kind")
    for name in POLICIES:
        impl = POLICIES.implementation(name)
        if getattr(impl, "kind", None) == kind:
            return impl.load(path)
    raise CheckpointError(
        f"{path} holds a policy of kind '{kind}', which this robopref does not know: use the "
        "release that wrote it"
    )
