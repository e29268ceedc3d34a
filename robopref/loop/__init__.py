"""The preference loop (the algorithm box), its run store, and evaluation with intervals."""

from robopref.loop.collectors import RolloutCollector, RunStopped, VecEnvCollector
from robopref.loop.config import LoopConfig
from robopref.loop.evaluation import (
    json_safe,
    mean_interval,
    quality_summary,
    rate_summary,
    select_by_learned_return,
    wilson_interval,
)
from robopref.loop.labels import LabelTimeout, gather
from robopref.loop.preference_loop import PreferenceLoop, RoundResult
from robopref.loop.store import RunStore, load_run_episodes

__all__ = [
    "LabelTimeout",
    "LoopConfig",
    "PreferenceLoop",
    "RolloutCollector",
    "RoundResult",
    "RunStopped",
    "RunStore",
    "VecEnvCollector",
    "gather",
    "json_safe",
    "load_run_episodes",
    "mean_interval",
    "quality_summary",
    "rate_summary",
    "select_by_learned_return",
    "wilson_interval",
]
