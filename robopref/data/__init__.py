"""Episodes, segments, preferences and dataset I/O. Imports nothing else of robopref."""

from robopref.data.episode import Episode, stack_transitions
from robopref.data.lerobot_io import FORMAT_VERSION, load_episodes, save_episodes
from robopref.data.preference import (
    Label,
    Preference,
    Segment,
    preference_targets,
    segment_pair_arrays,
)

__all__ = [
    "FORMAT_VERSION",
    "Episode",
    "Label",
    "Preference",
    "Segment",
    "load_episodes",
    "preference_targets",
    "save_episodes",
    "segment_pair_arrays",
    "stack_transitions",
]
