"""Imitation-learned policies (installed as ``robopref.policies``)."""

from robopref.policies.base import Policy, TrainablePolicy, load_policy
from robopref.policies.bc import BCConfig, BCPolicy, average_policies, train_bc
from robopref.registry import Registry

# The one registry of policy families.
POLICIES = Registry(
    "policy", {"bc": ("robopref.policies.bc:BCConfig", "robopref.policies.bc:BCPolicy")}
)

__all__ = [
    "POLICIES",
    "BCConfig",
    "BCPolicy",
    "Policy",
    "TrainablePolicy",
    "average_policies",
    "load_policy",
    "train_bc",
]
