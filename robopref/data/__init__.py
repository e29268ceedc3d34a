"""Episodes, segments, preferences and dataset I/O. Imports nothing else of robopref."""

from robopref.data.episode import Episode, as_pool, assign_ids, episode_id, stack_transitions
from robopref.data.lerobot_io import (
    FORMAT_VERSION,
    dataset_id_of,
    load_episodes,
    migrate_dataset,
    new_dataset_id,
    save_episodes,
)
from robopref.data.preference import (
    Label,
    Preference,
    Segment,
    load_preferences,
    preference_targets,
    preference_weights,
    save_preferences,
    segment_pair_arrays,
)

__all__ = [
    "FORMAT_VERSION",
    "Episode",
    "Label",
    "Preference",
    "Segment",
    "as_pool",
    "assign_ids",
    "dataset_id_of",
    "episode_id",
    "load_episodes",
    "load_preferences",
    "migrate_dataset",
    "new_dataset_id",
    "preference_targets",
    "preference_weights",
    "save_episodes",
    "save_preferences",
    "segment_pair_arrays",
    "stack_transitions",
]
