"""Imitation-learned policies (installed as ``robopref.policies``)."""

from robopref.policies.base import Policy, TrainablePolicy, load_policy
from robopref.policies.bc import BCConfig, BCPolicy, average_policies, train_bc
from robopref.policies.residual import ResidualConfig, ResidualPolicy, as_residual
from robopref.registry import Registry

# The one registry of policy families. A residual is built on a trained base (refiners wrap it
# with ``refine.residual=true``); it is listed so its checkpoints load by kind.
POLICIES = Registry(
    "policy",
    {
        "bc": ("robopref.policies.bc:BCConfig", "robopref.policies.bc:BCPolicy"),
        "residual": (
            "robopref.policies.residual:ResidualConfig",
            "robopref.policies.residual:ResidualPolicy",
        ),
    },
)

__all__ = [
    "POLICIES",
    "BCConfig",
    "BCPolicy",
    "Policy",
    "ResidualConfig",
    "ResidualPolicy",
    "TrainablePolicy",
    "as_residual",
    "average_policies",
    "load_policy",
    "train_bc",
]
