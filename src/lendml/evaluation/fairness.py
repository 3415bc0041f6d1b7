"""Fair-lending checks of a score at a cutoff: approval rates, adverse impact, score gaps.

Decision rule (explicit everywhere): an applicant is **approved when score < cutoff**, i.e.
when the predicted P(bad) is below the cutoff, and declined otherwise.

For each protected attribute (a column such as ``sex``, ``age_band`` or ``race``) and each
of its groups the table reports:

* ``n``, ``n_approved`` and ``approval_rate``;
* ``air`` — the adverse impact ratio, the group's approval rate over the reference
  group's. The reference is, unless configured per attribute, the group with the highest
  approval rate (the most favoured group). ``air_flag`` is set when ``air < 0.8`` (the
  four-fifths rule of the US Uniform Guidelines);
* ``fisher_p`` — two-sided p-value of Fisher's exact test (``scipy.stats.fisher_exact``)
  on the 2×2 table approved/declined × group/reference: is the gap more than chance?
* ``smd`` — standardized mean difference of the scores, ``(mean_g − mean_ref) / pooled
  SD`` with the pooled SD ``√(((n_g−1)s_g² + (n_r−1)s_r²) / (n_g + n_r − 2))``; positive
  means the group is scored riskier than the reference;
* ``auc`` per group when labels are given (NaN with a note when a group has one class).

Rows with a missing protected value form a ``(missing)`` group: reported, never the
reference. Without a cutoff only the score gaps (SMD, mean score, AUC) are reported and
the reference is the group with the lowest mean score.

These are screening statistics, not a legal finding: a low AIR calls for a look at the
business justification and at less discriminatory alternatives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from lendml.errors import ConfigError
from lendml.evaluation._binning import MISSING, group_codes, split_by_code
from lendml.evaluation._checks import as_labels, as_scores, check_frame, jsonable
from lendml.evaluation.groups import SMALL_CLASS
from lendml.evaluation.metrics import auc_or_nan

#: The four-fifths rule: an adverse impact ratio below this is flagged.
AIR_THRESHOLD = 0.8
#: Groups smaller than this are reported with a note: their rates are noisy.
SMALL_GROUP = 30
DECISION_RULE = "approve when score < cutoff (P(bad) below the cutoff); decline otherwise"

_COLUMNS = [
    "attribute",
    "group",
    "n",
    "n_approved",
    "approval_rate",
    "is_reference",
    "air",
    "air_flag",
    "fisher_p",
    "mean_score",
    "smd",
    "n_bad",
    "bad_rate",
    "auc",
    "note",
]


@dataclass(frozen=True, eq=False)
class FairLendingResult:
    """Per attribute and group: approval rates, AIR, Fisher p, SMD and AUC.

    Attributes
    ----------
    table
        One row per (attribute, group); columns in the module docstring, plus
        ``is_reference``, ``n_bad``, ``bad_rate`` and ``note``.
    cutoff
        The cutoff (None: no approval figures).
    decision_rule
        The rule the approval figures use, spelled out.
    air_threshold
        AIR below this is flagged.
    references
        The reference group chosen for each attribute.
    """

    table: pd.DataFrame
    cutoff: float | None
    decision_rule: str
    air_threshold: float
    references: dict[str, str]

    @property
    def flagged(self) -> pd.DataFrame:
        """The rows whose AIR is below the threshold."""
        return self.table[self.table["air_flag"]].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``."""
        return jsonable(
            {
                "cutoff": self.cutoff,
                "decision_rule": self.decision_rule,
                "air_threshold": self.air_threshold,
                "references": self.references,
                "n_flagged": int(self.table["air_flag"].sum()),
                "table": self.table,
            }
        )


def _pooled_smd(s_g: np.ndarray, s_r: np.ndarray) -> float:
    n_g, n_r = len(s_g), len(s_r)
    if n_g == 0 or n_r == 0:
        return float("nan")
    diff = float(s_g.mean() - s_r.mean())
    if diff == 0.0:
        return 0.0
    if n_g + n_r < 3:
        return float("nan")
    var_g = float(s_g.var(ddof=1)) if n_g > 1 else 0.0
    var_r = float(s_r.var(ddof=1)) if n_r > 1 else 0.0
    pooled = np.sqrt(((n_g - 1) * var_g + (n_r - 1) * var_r) / (n_g + n_r - 2))
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else float("nan")
    return diff / float(pooled)


def _attribute_rows(
    attribute: str,
    values: pd.Series,
    s: np.ndarray,
    y: np.ndarray | None,
    cutoff: float | None,
    reference: Any,
    air_threshold: float,
) -> tuple[list[dict[str, Any]], str]:
    codes, names = group_codes(values, what=f"The protected attribute {attribute!r}")
    parts = split_by_code(codes, len(names))
    approved = s < cutoff if cutoff is not None else None
    stats = []
    for name, pos in zip(names, parts, strict=True):
        n = len(pos)
        n_appr = int(approved[pos].sum()) if approved is not None else 0
        stats.append(
            {
                "name": name,
                "pos": pos,
                "n": n,
                "n_approved": n_appr,
                "rate": n_appr / n if (n and cutoff is not None) else float("nan"),
                "mean": float(s[pos].mean()) if n else float("nan"),
            }
        )
    eligible = [st for st in stats if st["n"] > 0 and st["name"] != MISSING]
    if reference is not None:
        ref_name = str(reference)
        if ref_name == MISSING:
            raise ConfigError(
                f"The reference group of {attribute!r} cannot be {MISSING!r}: missing values "
                "are reported but never the reference. Name one of the attribute's groups."
            )
        match = [st for st in stats if st["name"] == ref_name]
        if not match or match[0]["n"] == 0:
            raise ConfigError(
                f"The reference group {reference!r} of {attribute!r} has no rows; its groups "
                f"are {[st['name'] for st in eligible]!r}."
            )
        ref = match[0]
    elif not eligible:
        raise ConfigError(
            f"The protected attribute {attribute!r} has no non-missing value: it cannot be "
            "assessed. Fill it in or leave it out."
        )
    elif cutoff is not None:
        # Most favoured: highest approval rate; ties go to the larger group, then to the
        # first in group order (max and min keep the first of equal keys).
        ref = max(eligible, key=lambda st: (st["rate"], st["n"]))
    else:
        ref = min(eligible, key=lambda st: (st["mean"], -st["n"]))
    rows = []
    for st in stats:
        n = st["n"]
        is_ref = st is ref
        notes = []
        if is_ref:
            notes.append("reference group")
        if st["name"] == MISSING:
            notes.append("missing protected value")
        if n == 0:
            notes.append("no rows")
        elif n < SMALL_GROUP:
            notes.append(f"small group (n < {SMALL_GROUP}): rates are noisy")
        air = fisher_p = float("nan")
        if cutoff is not None and n:
            if ref["rate"] > 0:
                air = st["rate"] / ref["rate"]
            else:
                notes.append("reference approves no one: AIR undefined")
            if is_ref:
                air = 1.0
            else:
                table = [
                    [st["n_approved"], n - st["n_approved"]],
                    [ref["n_approved"], ref["n"] - ref["n_approved"]],
                ]
                fisher_p = float(fisher_exact(table, alternative="two-sided").pvalue)
        smd = 0.0 if is_ref else _pooled_smd(s[st["pos"]], s[ref["pos"]])
        n_bad = bad_rate = auc = float("nan")
        if y is not None:
            yg = y[st["pos"]]
            n_bad = int(yg.sum())
            bad_rate = n_bad / n if n else float("nan")
            auc = auc_or_nan(yg, s[st["pos"]])
            if n and (n_bad == 0 or n_bad == n):
                notes.append("one class only: AUC undefined")
            elif n and min(n_bad, n - n_bad) < SMALL_CLASS:
                notes.append(f"fewer than {SMALL_CLASS} bads or goods: AUC is noisy")
        rows.append(
            {
                "attribute": attribute,
                "group": st["name"],
                "n": n,
                "n_approved": st["n_approved"] if cutoff is not None else None,
                "approval_rate": st["rate"],
                "is_reference": is_ref,
                "air": air,
                "air_flag": bool(np.isfinite(air) and air < air_threshold),
                "fisher_p": fisher_p,
                "mean_score": st["mean"],
                "smd": smd,
                "n_bad": n_bad,
                "bad_rate": bad_rate,
                "auc": auc,
                "note": "; ".join(notes),
            }
        )
    return rows, ref["name"]


def fair_lending(
    score: Any,
    protected: pd.DataFrame | pd.Series,
    *,
    cutoff: float | None,
    y_true: Any = None,
    reference_groups: Mapping[str, Any] | None = None,
    air_threshold: float = AIR_THRESHOLD,
) -> FairLendingResult:
    """Approval rates, adverse impact ratios, Fisher tests and score gaps per protected group.

    Parameters
    ----------
    score
        P(bad) per row (higher = riskier).
    protected
        One column per protected attribute, same rows as ``score``. These are never model
        inputs; they are given here only to test the decisions.
    cutoff
        Approve when ``score < cutoff``. ``None`` reports score gaps only.
    y_true
        Optional labels (1 = bad): adds bad rate and AUC per group.
    reference_groups
        ``{attribute: group}`` to fix the reference group of some attributes; others use
        the group with the highest approval rate.
    air_threshold
        Flag AIR below this (default 0.8, the four-fifths rule).

    Examples
    --------
    >>> import pandas as pd
    >>> r = fair_lending([0.1, 0.2, 0.6, 0.1, 0.7, 0.8],
    ...                  pd.DataFrame({"sex": ["F", "F", "F", "M", "M", "M"]}), cutoff=0.5)
    >>> r.table[["group", "approval_rate", "air", "air_flag"]].to_numpy().tolist()
    [['F', 0.6666666666666666, 1.0, False], ['M', 0.3333333333333333, 0.5, True]]
    """
    s = as_scores(score, name="score")
    n = len(s)
    frame = check_frame(protected, name="protected", n=n, against="score")
    y = as_labels(y_true, name="y_true") if y_true is not None else None
    if y is not None and len(y) != n:
        raise ConfigError(
            f"y_true has {len(y):,} rows but score has {n:,}: every input must describe the "
            "same rows, in the same order."
        )
    if cutoff is not None:
        if isinstance(cutoff, bool) or not isinstance(cutoff, int | float | np.floating):
            raise ConfigError(f"cutoff must be a number (a P(bad)); got {cutoff!r}.")
        cutoff = float(cutoff)
        if not np.isfinite(cutoff):
            raise ConfigError(f"cutoff must be finite; got {cutoff!r}.")
    if (
        isinstance(air_threshold, bool)
        or not isinstance(air_threshold, int | float)
        or not (0.0 < air_threshold <= 1.0)
    ):
        raise ConfigError(f"air_threshold must be in (0, 1]; got {air_threshold!r}.")
    refs = dict(reference_groups or {})
    columns = [str(c) for c in frame.columns]
    unknown = sorted(set(refs) - set(columns))
    if unknown:
        raise ConfigError(
            f"reference_groups names attribute(s) {unknown!r} that protected lacks; its "
            f"columns are {columns!r}."
        )
    rows: list[dict[str, Any]] = []
    references: dict[str, str] = {}
    for col, name in zip(frame.columns, columns, strict=True):
        attr_rows, ref = _attribute_rows(
            name, frame[col], s, y, cutoff, refs.get(name), float(air_threshold)
        )
        rows.extend(attr_rows)
        references[name] = ref
    table = pd.DataFrame(rows, columns=_COLUMNS)
    return FairLendingResult(table, cutoff, DECISION_RULE, float(air_threshold), references)
