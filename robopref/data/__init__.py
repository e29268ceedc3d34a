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
    SCORE_MAX,
    Label,
    Preference,
    Score,
    Segment,
    load_preferences,
    load_scores,
    preference_targets,
    preference_weights,
    save_preferences,
    save_scores,
    segment_pair_arrays,
    segment_pair_metrics,
)

__all__ = [
    "FORMAT_VERSION",
    "SCORE_MAX",
    "Episode",
    "Label",
    "Preference",
    "Score",
    "Segment",
    "as_pool",
    "assign_ids",
    "dataset_id_of",
    "episode_id",
    "load_episodes",
    "load_preferences",
    "load_scores",
    "migrate_dataset",
    "new_dataset_id",
    "preference_targets",
    "preference_weights",
    "save_episodes",
    "save_preferences",
    "save_scores",
    "segment_pair_arrays",
    "segment_pair_metrics",
    "stack_transitions",
]
