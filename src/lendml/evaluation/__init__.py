"""Credit-grade evaluation: discrimination, calibration, stability, fair lending, reports.

The evaluation is pure: it takes labels (1 = bad), scores (P(bad), higher = riskier) and
frames, never a model or a database. :func:`evaluate` computes every figure at once and
returns an :class:`Evaluation` that writes JSON, a self-contained HTML report and a
Markdown model card; the building blocks are public too:

* discrimination — :func:`auc_delong`, :func:`ks_statistic`, :func:`discrimination`,
  :func:`gains_table`, :func:`score_distribution`;
* calibration — :func:`reliability_curve`, :func:`expected_calibration_error`,
  :func:`hosmer_lemeshow`, :func:`calibration_metrics`;
* stability — :func:`fit_bins` / :class:`Bins` (frozen, JSON-serializable), :func:`psi`,
  :func:`fit_frame_bins`, :func:`csi`;
* groups — :func:`metrics_by_group`, :func:`metrics_by_period`;
* fair lending — :func:`fair_lending`;
* champion vs challenger — :func:`compare_auc` (paired DeLong, non-inferiority).
"""

from lendml.evaluation._checks import jsonable
from lendml.evaluation.calibration import (
    Calibration,
    HosmerLemeshow,
    calibration_metrics,
    expected_calibration_error,
    hosmer_lemeshow,
    reliability_curve,
)
from lendml.evaluation.compare import AUCComparison, compare_auc
from lendml.evaluation.fairness import FairLendingResult, fair_lending
from lendml.evaluation.groups import metrics_by_group, metrics_by_period
from lendml.evaluation.metrics import (
    AUCResult,
    Discrimination,
    KSResult,
    auc_delong,
    discrimination,
    gains_table,
    ks_statistic,
    score_distribution,
)
from lendml.evaluation.report import Evaluation, evaluate
from lendml.evaluation.stability import Bins, PSIResult, csi, fit_bins, fit_frame_bins, psi

__all__ = [
    "AUCComparison",
    "AUCResult",
    "Bins",
    "Calibration",
    "Discrimination",
    "Evaluation",
    "FairLendingResult",
    "HosmerLemeshow",
    "KSResult",
    "PSIResult",
    "auc_delong",
    "calibration_metrics",
    "compare_auc",
    "csi",
    "discrimination",
    "evaluate",
    "expected_calibration_error",
    "fair_lending",
    "fit_bins",
    "fit_frame_bins",
    "gains_table",
    "hosmer_lemeshow",
    "jsonable",
    "ks_statistic",
    "metrics_by_group",
    "metrics_by_period",
    "psi",
    "reliability_curve",
    "score_distribution",
]
