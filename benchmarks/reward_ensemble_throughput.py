"""Reward-ensemble training throughput: stacked members vs vmap vs a Python loop.

All variants run the same Bradley–Terry step (forward, loss, backward, Adam) on the same
batch of segment pairs: robopref's ``StackedMLP`` (batched matmuls over stacked
parameters), ``torch.func.vmap`` over ``functional_call``, and a Python loop over separate
member modules. Prints pairs/s and ratios from this one run; no thresholds are asserted.

    .venv/bin/python benchmarks/reward_ensemble_throughput.py [--members 5] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from robopref.rewards import BTEnsemble, EnsembleConfig
from robopref.training import Trainer, TrainerConfig, select_device


def bt_loss_from_rewards(rewards: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    returns = rewards.sum(-1)  # (..., B, 2)
    return nn.functional.binary_cross_entropy_with_logits(
        returns[..., 0] - returns[..., 1], target.expand(returns.shape[:-1])
    )


def looped_step(members: list[nn.Module], opt, x: torch.Tensor, target: torch.Tensor) -> None:
    # x (B, 2, L, in): each member scores the whole batch in its own forward pass.
    losses = []
    for member in members:
        returns = member(x).squeeze(-1).sum(-1)  # (B, 2)
        logits = returns[:, 0] - returns[:, 1]
        losses.append(nn.functional.binary_cross_entropy_with_logits(logits, target))
    loss = torch.stack(losses).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="pairs per step")
    parser.add_argument("--segment", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (runs use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    obs_dim, act_dim = 39, 4
    trainer = Trainer(TrainerConfig(device=str(device), progress=False))
    config = EnsembleConfig(members=args.members, hidden_sizes=[args.hidden] * 2, output_bound=0)
    ensemble = BTEnsemble(obs_dim, act_dim, config, trainer).to(device)
    members = [
        nn.Sequential(
            nn.Linear(obs_dim + act_dim, args.hidden),
            nn.LeakyReLU(),
            nn.Linear(args.hidden, args.hidden),
            nn.LeakyReLU(),
            nn.Linear(args.hidden, 1),
        ).to(device)
        for _ in range(args.members)
    ]
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(args.batch, 2, args.segment, obs_dim, generator=gen).to(device)
    act = torch.randn(args.batch, 2, args.segment, act_dim, generator=gen).to(device)
    target = torch.randint(0, 2, (args.batch,), generator=gen).float().to(device)
    batch = {"obs": obs, "act": act, "target": target, "weight": torch.ones_like(target)}
    x = torch.cat([obs, act], -1)

    opt_v = torch.optim.Adam(ensemble.parameters(), lr=3e-4)
    opt_l = torch.optim.Adam([p for m in members for p in m.parameters()], lr=3e-4)

    def stacked():
        loss, _ = ensemble.bt_loss(ensemble, batch)
        opt_v.zero_grad()
        loss.backward()
        opt_v.step()

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch / (time.perf_counter() - start)

    params, buffers = stack_module_state(members)
    params = {k: nn.Parameter(v.detach().clone()) for k, v in params.items()}
    meta = copy.deepcopy(members[0]).to("meta")
    opt_f = torch.optim.Adam(params.values(), lr=3e-4)

    def functorch():
        call = vmap(lambda p, b, inp: functional_call(meta, (p, b), (inp,)), in_dims=(0, 0, None))
        loss = bt_loss_from_rewards(call(params, buffers, x).squeeze(-1), target)
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()

    rate_s = timed(stacked)
    rate_v = timed(functorch)
    rate_l = timed(lambda: looped_step(members, opt_l, x, target))
    print(
        f"{args.members} members, {args.batch} pairs x 2 x {args.segment} steps, hidden "
        f"{args.hidden}x2, device {device}, torch threads {torch.get_num_threads()}"
    )
    for name, rate in (
        ("robopref StackedMLP (baddbmm)", rate_s),
        ("torch.func.vmap(functional_call)", rate_v),
        ("python loop over members", rate_l),
    ):
        print(f"  {name:<34} {rate:7.0f} pairs/s  ({rate / rate_l:.2f} x loop)")


if __name__ == "__main__":
    main()
