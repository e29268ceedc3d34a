"""Imitation-learned policies (installed as ``robopref.policies``)."""

from robopref.policies.base import Policy
from robopref.policies.bc import BCConfig, BCPolicy, average_policies, train_bc

# The one registry of policy families: name -> (config class, policy class).
POLICIES = {"bc": (BCConfig, BCPolicy)}

__all__ = ["POLICIES", "BCConfig", "BCPolicy", "Policy", "average_policies", "train_bc"]
