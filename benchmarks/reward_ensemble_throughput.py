"""Reward-ensemble training throughput: one vmapped pass vs a Python loop over members.

Both variants run the same Bradley–Terry step (forward, loss, backward, Adam) on the same
batch of segment pairs; the loop variant holds the members as separate modules. Prints
pairs/s and the ratio from this one run; no thresholds are asserted.

    .venv/bin/python benchmarks/reward_ensemble_throughput.py [--members 5] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from robopref.rewards import BTEnsemble, EnsembleConfig
from robopref.training import Trainer, TrainerConfig, select_device


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
    batch = {"obs": obs, "act": act, "target": target}
    x = torch.cat([obs, act], -1)

    opt_v = torch.optim.Adam(ensemble.parameters(), lr=3e-4)
    opt_l = torch.optim.Adam([p for m in members for p in m.parameters()], lr=3e-4)

    def vmapped():
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

    rate_v = timed(vmapped)
    rate_l = timed(lambda: looped_step(members, opt_l, x, target))
    print(
        f"{args.members} members, {args.batch} pairs x 2 x {args.segment} steps, hidden "
        f"{args.hidden}x2, device {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"  vmap (stack_module_state):  {rate_v:9.0f} pairs/s")
    print(f"  python loop over members:   {rate_l:9.0f} pairs/s")
    print(f"  ratio vmap / loop:          {rate_v / rate_l:9.2f}")


if __name__ == "__main__":
    main()
