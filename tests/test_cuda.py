"""GPU paths of the Trainer and the models it trains. Skipped where CUDA is absent (CI);
run on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import linear_reward, make_episodes
from torch import nn

from robopref.policies import BCConfig, BCPolicy, train_bc
from robopref.preferences import ScriptedTeacher, sample_pairs
from robopref.rewards import BTEnsemble, EnsembleConfig, preference_accuracy
from robopref.training import Trainer, TrainerConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_config(steps: int, **kwargs) -> TrainerConfig:
    return TrainerConfig(
        steps=steps, **{"batch_size": 64, "lr": 3e-3, "device": "auto", "progress": False, **kwargs}
    )


def regression_data(n: int = 512) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8).unsqueeze(1)
    return {"x": x, "y": y}


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))


def test_auto_device_is_cuda_and_autocast_computes_in_bf16():
    trainer = Trainer(cuda_config(1))
    assert trainer.device.type == "cuda" and trainer.use_amp
    seen = {}

    def loss_fn(model, batch):
        out = model(batch["x"])
        seen["dtype"] = out.dtype
        return ((out.float() - batch["y"]) ** 2).mean(), {}

    model = make_model()
    trainer.fit(model, loss_fn, regression_data())
    assert seen["dtype"] == torch.bfloat16
    # Parameters stay fp32: autocast changes the compute dtype only.
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())


def test_bf16_training_converges_like_fp32():
    def mse(model, batch):
        return ((model(batch["x"]).float() - batch["y"]) ** 2).mean(), {}

    data = regression_data()
    losses = {}
    for amp in (True, False):
        model = make_model()
        losses[amp] = Trainer(cuda_config(400, amp=amp)).fit(model, mse, data)["loss"]
    assert losses[False] < 0.05 and losses[True] < 0.05, losses


def test_resume_on_cuda_equals_uninterrupted_training(tmp_path):
    def mse(model, batch):
        return ((model(batch["x"]).float() - batch["y"]) ** 2).mean(), {}

    data = regression_data()
    full = make_model()
    Trainer(cuda_config(40), checkpoint_path=tmp_path / "full.pt").fit(full, mse, data)
    half = make_model()
    Trainer(cuda_config(20), checkpoint_path=tmp_path / "run.pt").fit(half, mse, data)
    resumed = make_model(seed=7)
    Trainer(cuda_config(40), checkpoint_path=tmp_path / "run.pt").fit(resumed, mse, data)
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_reward_ensemble_trains_on_cuda_and_scores_numpy_episodes():
    w = [1.0, -0.5, 0.25, 0.0, 0.0]
    train = make_episodes(30, T=20, obs_dim=5, act_dim=2, seed=0, reward_fn=linear_reward(w))
    test = make_episodes(10, T=20, obs_dim=5, act_dim=2, seed=99, reward_fn=linear_reward(w))
    rng = np.random.default_rng(0)
    prefs = [p for p in ScriptedTeacher().label(sample_pairs(train, 5, 300, rng), train) if p]
    model = BTEnsemble(
        5,
        2,
        EnsembleConfig(members=3, hidden_sizes=[32, 32], output_bound=0.0),
        Trainer(cuda_config(200, batch_size=64)),
    )
    model.fit(prefs, train)
    assert next(model.parameters()).is_cuda
    accuracy = preference_accuracy(model, sample_pairs(test, 5, 300, rng), test)
    assert accuracy > 0.85, accuracy
    rewards = model.episode_rewards(test[0])
    assert isinstance(rewards, np.ndarray) and rewards.shape == (20,)


def test_bc_policy_trains_on_cuda_and_acts_on_numpy():
    demos = make_episodes(10, T=30, obs_dim=5, act_dim=2, seed=3)
    policy = BCPolicy(5, 2, BCConfig())
    train_bc(policy, demos, Trainer(cuda_config(50)))
    actions = policy.act(np.zeros((4, 5), np.float32))
    assert isinstance(actions, np.ndarray) and actions.shape == (4, 2)
    assert np.isfinite(actions).all()
