"""Cross-task preference transfer by optimal transport (PEARL): representations, GW plans,
label transfer, orientation and calibration, and the transfer preference source."""

from robopref.preferences.transfer.label_transfer import (
    CALIBRATIONS,
    SourceLabels,
    expected_calibration_error,
    rank_normalise,
    sharpen,
    transfer_labels,
)
from robopref.preferences.transfer.orientation import (
    ORIENTATIONS,
    goal_distance_labels,
    goal_progress,
    orient_by_labels,
    orient_by_progress,
)
from robopref.preferences.transfer.plans import (
    SOLVERS,
    DensePlan,
    GWConfig,
    LowRankPlan,
    Plan,
    PlanNotConverged,
    solve_plan,
)
from robopref.preferences.transfer.representations import (
    REPRESENTATIONS,
    TransferError,
    dtw_costs,
    goal_relative_features,
    intra_task_costs,
    pooled_features,
)
from robopref.preferences.transfer.source import SourceBank, TransferConfig, TransferSource

__all__ = [
    "CALIBRATIONS",
    "ORIENTATIONS",
    "REPRESENTATIONS",
    "SOLVERS",
    "DensePlan",
    "GWConfig",
    "LowRankPlan",
    "Plan",
    "PlanNotConverged",
    "SourceBank",
    "SourceLabels",
    "TransferConfig",
    "TransferError",
    "TransferSource",
    "dtw_costs",
    "expected_calibration_error",
    "goal_distance_labels",
    "goal_progress",
    "goal_relative_features",
    "intra_task_costs",
    "orient_by_labels",
    "orient_by_progress",
    "pooled_features",
    "rank_normalise",
    "sharpen",
    "solve_plan",
    "transfer_labels",
]
