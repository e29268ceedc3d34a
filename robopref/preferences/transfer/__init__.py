"""Cross-task preference transfer by optimal transport (PEARL): representations, GW plans,
label transfer and calibration, and the transfer preference source."""

from robopref.preferences.transfer.label_transfer import (
    CALIBRATIONS,
    SourceLabels,
    expected_calibration_error,
    rank_normalise,
    sharpen,
    transfer_labels,
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
    intra_task_costs,
    pooled_features,
)
from robopref.preferences.transfer.source import SourceBank, TransferConfig, TransferSource

__all__ = [
    "CALIBRATIONS",
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
    "intra_task_costs",
    "pooled_features",
    "rank_normalise",
    "sharpen",
    "solve_plan",
    "transfer_labels",
]
