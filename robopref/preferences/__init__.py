"""Segments, query selection and preference sources (teachers, people, transfer)."""

from robopref.preferences.base import PreferenceSource
from robopref.preferences.queries import (
    QUERY_SELECTORS,
    DisagreementSelector,
    EntropySelector,
    QuerySelector,
    UniformSelector,
)
from robopref.preferences.segments import sample_pairs, sample_segments
from robopref.preferences.teacher import TEACHER_PRESETS, ScriptedTeacher, TeacherConfig

# The one registry of preference sources: name -> (config class, source class).
PREFERENCE_SOURCES = {"scripted_teacher": (TeacherConfig, ScriptedTeacher)}

__all__ = [
    "PREFERENCE_SOURCES",
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
