"""The Trainer: exact resume, checkpoint errors, logging, device selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robopref.errors import CheckpointError, ConfigError
from robopref.training import (
    CHECKPOINT_FORMAT_VERSION,
    Trainer,
    TrainerConfig,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
    scheduled_lr,
    select_device,
)


def make_model(hidden: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def make_data(n: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    return {"x": x, "y": y}


def mse_loss(model, batch):
    loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


def config(steps: int, **kwargs) -> TrainerConfig:
    kwargs = {"batch_size": 16, "lr": 1e-2, "device": "cpu", "progress": False, **kwargs}
    return TrainerConfig(steps=steps, **kwargs)


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --------------------------------------------------------------------------- fit basics


def test_fit_reduces_loss_and_returns_metrics():
    model, data = make_model(), make_data()
    before = mse_loss(model, data)[0].item()
    metrics = Trainer(config(200)).fit(model, mse_loss, data)
    after = mse_loss(model, data)[0].item()
    assert after < 0.25 * before
    assert {"loss", "mse", "grad_norm"} <= set(metrics)
    assert not model.training  # left in eval mode


def test_fit_steps_argument_overrides_config():
    data = make_data()
    a, b = make_model(), make_model()
    Trainer(config(30)).fit(a, mse_loss, data, steps=5)
    Trainer(config(5)).fit(b, mse_loss, data)
    assert_same_parameters(a, b)


def test_fit_is_deterministic_per_seed():
    data = make_data()
    a, b, c = make_model(), make_model(), make_model()
    Trainer(config(20, seed=1)).fit(a, mse_loss, data)
    Trainer(config(20, seed=1)).fit(b, mse_loss, data)
    Trainer(config(20, seed=2)).fit(c, mse_loss, data)
    assert_same_parameters(a, b)
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"x": torch.zeros(0, 3), "y": torch.zeros(0, 1)},
        {"x": torch.zeros(4, 3), "y": torch.zeros(5, 1)},
    ],
)
def test_fit_rejects_bad_data(data):
    with pytest.raises(ValueError, match="non-empty tensors of one length"):
        Trainer(config(1)).fit(make_model(), mse_loss, data)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_raises(bad):
    def loss_fn(model, batch):
        loss, metrics = mse_loss(model, batch)
        return loss * bad, metrics

    with pytest.raises(FloatingPointError, match="loss became"):
        Trainer(config(3)).fit(make_model(), loss_fn, make_data())


def test_non_finite_loss_after_some_steps_names_the_step():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss, metrics = mse_loss(model, batch)
        return (loss * float("nan") if calls["n"] == 4 else loss), metrics

    with pytest.raises(FloatingPointError, match="at step 3"):
        Trainer(config(10)).fit(make_model(), loss_fn, make_data())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": -1}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -1e-3}, {"grad_clip": 0.0},
        {"lr_schedule": "linear"},
    ],
)
def test_trainer_config_validation(kwargs):
    with pytest.raises(ConfigError):
        TrainerConfig(**kwargs)


def test_cosine_schedule_decays_from_the_peak_to_zero_over_each_fit(monkeypatch):
    cfg = config(100, lr=1e-2, lr_schedule="cosine")
    assert scheduled_lr(cfg, 0, 100) == pytest.approx(1e-2)
    assert scheduled_lr(cfg, 50, 100) == pytest.approx(5e-3)
    assert scheduled_lr(cfg, 99, 100) < 1e-5
    assert scheduled_lr(config(100, lr=1e-2), 99, 100) == 1e-2  # constant

    optimizers, seen = [], []
    real_adamw = torch.optim.AdamW

    def recording_adamw(*args, **kwargs):
        optimizers.append(real_adamw(*args, **kwargs))
        return optimizers[-1]

    def recording_loss(model, batch):
        seen.append(optimizers[-1].param_groups[0]["lr"])
        return mse_loss(model, batch)

    monkeypatch.setattr(torch.optim, "AdamW", recording_adamw)
    Trainer(cfg).fit(make_model(), recording_loss, make_data())
    Trainer(cfg).fit(make_model(), recording_loss, make_data(), steps=10)
    # Each fit restarts at the peak and ends near zero; the steps argument sets the length.
    assert seen[0] == pytest.approx(1e-2) and seen[99] < 1e-5
    assert seen[100] == pytest.approx(1e-2) and seen[109] < 1e-3
    assert all(a >= b for a, b in zip(seen[:99], seen[1:100], strict=True))


# --------------------------------------------------------------------------- resume


def test_resume_equals_uninterrupted_training_exactly(tmp_path):
    data = make_data()
    full = make_model()
    Trainer(config(40), checkpoint_path=tmp_path / "full.pt").fit(full, mse_loss, data)

    first_half = make_model()
    Trainer(config(20), checkpoint_path=tmp_path / "run.pt").fit(first_half, mse_loss, data)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 20
    assert not torch.equal(first_half[0].weight, full[0].weight)

    resumed = make_model(seed=123)  # a fresh model: everything must come from the checkpoint
    Trainer(config(40), checkpoint_path=tmp_path / "run.pt").fit(resumed, mse_loss, data)
    assert_same_parameters(resumed, full)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 40


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_a_crash_uses_the_periodic_checkpoint(tmp_path, schedule):
    data = make_data()
    full = make_model()
    Trainer(config(40, lr_schedule=schedule)).fit(full, mse_loss, data)

    calls = {"n": 0}

    def crashing_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt
        return mse_loss(model, batch)

    path = tmp_path / "ckpt.pt"
    trainer_cfg = config(40, checkpoint_every=10, lr_schedule=schedule)
    with pytest.raises(KeyboardInterrupt):
        Trainer(trainer_cfg, checkpoint_path=path).fit(make_model(), crashing_loss, data)
    assert load_checkpoint(path)["step"] == 20

    resumed = make_model(seed=7)
    Trainer(trainer_cfg, checkpoint_path=path).fit(resumed, mse_loss, data)
    assert_same_parameters(resumed, full)


def test_resume_at_total_does_nothing_and_past_total_raises(tmp_path):
    data = make_data()
    path = tmp_path / "ckpt.pt"
    done = make_model()
    Trainer(config(10), checkpoint_path=path).fit(done, mse_loss, data)
    again = make_model(seed=3)
    Trainer(config(10), checkpoint_path=path).fit(again, mse_loss, data)
    assert_same_parameters(again, done)
    with pytest.raises(CheckpointError, match="past the 5 steps"):
        Trainer(config(5), checkpoint_path=path).fit(make_model(), mse_loss, data)


def test_resume_into_model_of_another_shape_raises_one_line(tmp_path):
    path = tmp_path / "ckpt.pt"
    Trainer(config(2), checkpoint_path=path).fit(make_model(hidden=8), mse_loss, make_data())
    with pytest.raises(CheckpointError, match="another shape") as info:
        Trainer(config(4), checkpoint_path=path).fit(make_model(hidden=16), mse_loss, make_data())
    message = str(info.value)
    assert "\n" not in message
    assert "(16, 3)" in message and "(8, 3)" in message


def test_load_state_dict_checked_reports_missing_and_unexpected_keys():
    model = make_model()
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(model, state, "somewhere.pt")
    message = str(info.value)
    assert "\n" not in message
    assert "missing ['0.bias']" in message and "unexpected ['extra.weight']" in message


def test_load_state_dict_checked_loads_matching_state():
    source, target = make_model(seed=1), make_model(seed=2)
    load_state_dict_checked(target, source.state_dict(), "x.pt")
    assert_same_parameters(source, target)


def test_resume_from_a_non_trainer_checkpoint_raises(tmp_path):
    path = save_checkpoint(tmp_path / "other.pt", {"kind": "bc_policy", "model": {}})
    with pytest.raises(CheckpointError, match="not a trainer checkpoint"):
        Trainer(config(2), checkpoint_path=path).fit(make_model(), mse_loss, make_data())


# --------------------------------------------------------------------------- checkpoint files


def test_save_checkpoint_round_trip_and_no_temp_files(tmp_path):
    folder = tmp_path / "nested" / "dir"
    path = save_checkpoint(folder / "a.pt", {"value": torch.arange(3), "name": "x"})
    save_checkpoint(folder / "a.pt", {"value": torch.arange(4), "name": "y"})  # overwrite
    assert path == folder / "a.pt"
    assert [p.name for p in folder.iterdir()] == ["a.pt"]
    payload = load_checkpoint(path)
    assert payload["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert payload["name"] == "y" and torch.equal(payload["value"], torch.arange(4))


def test_failed_save_leaves_no_temp_file_and_keeps_old_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", {"value": 1})
    with pytest.raises(Exception):  # noqa: B017  (pickling error type is torch's business)
        save_checkpoint(path, {"value": lambda: None})
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    assert load_checkpoint(path)["value"] == 1


def test_trainer_checkpointing_leaves_no_temp_files(tmp_path):
    Trainer(config(12, checkpoint_every=3), checkpoint_path=tmp_path / "c.pt").fit(
        make_model(), mse_loss, make_data()
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_checkpoint_raises(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage, not a torch file" * 20)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        Trainer(config(2), checkpoint_path=path).fit(make_model(), mse_loss, make_data())


def test_truncated_checkpoint_raises(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": make_model().state_dict()})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_missing_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("payload", [{"format_version": 99}, {"model": 1}, [1, 2, 3]])
def test_checkpoint_of_other_format_version_raises(tmp_path, payload):
    path = tmp_path / "c.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- device, logging


def test_select_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto") == torch.device(expected)
    assert select_device() == torch.device(expected)
    assert select_device("cpu") == torch.device("cpu")
    assert Trainer(config(1)).device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_select_device_auto_is_cpu_and_cuda_request_fails_without_gpu():
    assert select_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(ConfigError):
        Trainer(TrainerConfig(device="cuda:0", progress=False))


def test_amp_is_off_on_cpu():
    trainer = Trainer(config(1, amp=True))
    assert not trainer.use_amp
    with trainer.autocast():
        assert not torch.is_autocast_enabled("cuda")


def test_tensorboard_event_files_under_log_dir_name(tmp_path):
    trainer = Trainer(config(10, log_every=2), name="reward", log_dir=tmp_path / "tb")
    trainer.fit(make_model(), mse_loss, make_data())
    trainer.close()
    events = list((tmp_path / "tb" / "reward").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"reward/loss", "reward/mse", "reward/grad_norm"} <= set(tags)
    assert [e.step for e in acc.Scalars("reward/loss")] == [2, 4, 6, 8, 10]


def test_no_log_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Trainer(config(5)).fit(make_model(), mse_loss, make_data())
    assert list(tmp_path.iterdir()) == []


def test_resumed_run_continues_tensorboard_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, data = tmp_path / "ckpt.pt", make_data()
    Trainer(config(20), checkpoint_path=path).fit(make_model(), mse_loss, data)
    trainer = Trainer(config(40, log_every=10), log_dir=tmp_path / "tb", checkpoint_path=path)
    trainer.fit(make_model(), mse_loss, data)
    trainer.close()
    acc = EventAccumulator(str(tmp_path / "tb" / "model"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("model/loss")] == [30, 40]


def test_log_every_zero_is_rejected_or_harmless(tmp_path):
    try:
        cfg = config(3, log_every=0)
    except ConfigError:
        return
    Trainer(cfg, log_dir=tmp_path / "tb").fit(make_model(), mse_loss, make_data())
