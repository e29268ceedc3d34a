"""The README's Peel-v0 base policy: BC from 10 DART-style recorded demos.

Seed 0's base scores 0.37 on the first 30 validation scenes (success by the end state). It
declares the arm's per-axis step limits (10 mm, 0.05 rad) as its action range; the base built
before, which declared 0.05 on every axis (so its action normaliser scaled millimetres like
radians), scored 0.20 on the same scenes.

    .venv/bin/python scripts/peel_base.py OUT [--demos 10] [--seed 0] [--steps 3000]

Records ``--demos`` scripted-operator episodes on the simulated arm through ``robopref record``
(``teleop.execution_noise=0.001``: commands executed with 1 mm / 1 mrad of noise, the clean
ones kept as ``action.intended``), trains BC 256x256 on the intended actions with
``normalize_actions``, and saves the checkpoint folder ``OUT/policy``: the ``base=`` of
``robopref finetune hardware=sim task=peel``. ``OUT/demos`` keeps the recording.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for demos/ and policy/")
    parser.add_argument("--demos", type=int, default=10, help="recorded demonstrations")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed and BC seed")
    parser.add_argument("--steps", type=int, default=3000, help="BC gradient steps")
    args = parser.parse_args()

    import torch

    from robopref.cli import main as robopref
    from robopref.data import load_episodes
    from robopref.envs.peel import OBS_DIM, PeelConfig
    from robopref.policies import BCConfig, BCPolicy, train_bc
    from robopref.training import Trainer, TrainerConfig

    demos = args.out / "demos"
    if not demos.exists():
        robopref(["record", "hardware=sim", "teleop=scripted", "sensor=sim", "task=peel",
                  f"record.root={demos}", f"record.num_episodes={args.demos}",
                  "record.max_episode_s=20", "record.realtime=false",
                  "teleop.execution_noise=0.001", f"record.seed={args.seed}", "progress=false",
                  f"hydra.run.dir={args.out}/record_session"])
    episodes = load_episodes(demos, action_key="action.intended")
    torch.manual_seed(args.seed)
    # Per-axis bounds of the arm's step limits (10 mm, 0.05 rad): the residual's bound and the
    # action normaliser are fractions of them, so translation must not borrow rotation's.
    limits = PeelConfig()
    high = [limits.max_translation_step_m] * 3 + [limits.max_rotation_step_rad] * 3
    config = BCConfig(hidden_sizes=[256, 256], action_low=[-h for h in high], action_high=high,
                      normalize_actions=True)
    policy = BCPolicy(OBS_DIM, 6, config)
    trainer = Trainer(TrainerConfig(steps=args.steps, batch_size=256, lr=1e-3, device="cpu",
                                    progress=True, seed=args.seed), name="bc")
    train_bc(policy, episodes, trainer)
    print(f"base policy: {policy.save(args.out / 'policy')}")


if __name__ == "__main__":
    main()
