"""Segments, query selection and preference sources (teachers, people, transfer)."""

from robopref.preferences.base import (
    Answer,
    PreferenceSource,
    Query,
    ScoreQuery,
    SynchronousSource,
)
from robopref.preferences.queries import (
    QUERY_SELECTORS,
    DisagreementSelector,
    EntropySelector,
    QuerySelector,
    UniformSelector,
)
from robopref.preferences.segments import sample_pairs, sample_segments
from robopref.preferences.teacher import TEACHER_PRESETS, ScriptedTeacher, TeacherConfig
from robopref.registry import Registry

# The one registry of preference sources.
PREFERENCE_SOURCES = Registry(
    "preference source",
    {
        "scripted_teacher": (
            "robopref.preferences.teacher:TeacherConfig",
            "robopref.preferences.teacher:ScriptedTeacher",
        ),
        "delayed_teacher": (
            "robopref.preferences.delayed:DelayedTeacherConfig",
            "robopref.preferences.delayed:DelayedTeacher",
        ),
        "transfer": (
            "robopref.preferences.transfer.source:TransferConfig",
            "robopref.preferences.transfer.source:TransferSource",
        ),
        "people": (
            "robopref.label.source:LabelingSourceConfig",
            "robopref.label.source:LabelingSource",
        ),
    },
)

__all__ = [
    "PREFERENCE_SOURCES",
    "Answer",
    "Query",
    "ScoreQuery",
    "SynchronousSource",
    "QUERY_SELECTORS",
    "TEACHER_PRESETS",
    "DisagreementSelector",
    "EntropySelector",
    "PreferenceSource",
    "QuerySelector",
    "ScriptedTeacher",
    "TeacherConfig",
    "UniformSelector",
    "sample_pairs",
    "sample_segments",
]
