"""The promotion gate: what a challenger must show against the champion on the same rows.

Both models score the same labelled, out-of-time rows (the newest mature window). The
challenger passes only when every check passes:

* ``rows``: at least ``min_rows`` labelled rows with both outcomes (a missing label fails);
* ``non_inferior``: the paired DeLong test says the challenger's AUC is not worse than
  the champion's by more than ``margin`` (one-sided, level ``alpha``);
* ``better``: the challenger's AUC is higher by DeLong at ``alpha`` — or a drift or decay
  trigger brought it in (the champion is known to be degraded, so non-inferior suffices);
* ``calibration``: mean predicted P(bad) / observed bad rate within the bounds — or closer
  to 1 than the champion's (after a regime shift neither model is calibrated to the new
  bad rate; the better-calibrated one must not be blocked by the worse one's standard);
* ``fairness``: the adverse impact ratio of every protected group at the cutoff is at least
  ``min_air`` or not below the champion's (skipped, and said so, without a cutoff or
  protected columns; an undefined AIR — the challenger approves no one — fails);
* ``score_psi``: score stability — PSI of the challenger's scores on the comparison rows
  against its own training scores (frozen bins stored with the model) at most
  ``score_psi_max``, or not above the champion's PSI against *its* training scores. Without
  the stored references, the challenger's scores are compared with the champion's.

A check that cannot be computed fails (the gate fails closed) and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lendml.core.config import GateSettings
from lendml.evaluation import Bins, compare_auc, fair_lending, fit_bins, jsonable, psi

# Triggers that show the champion degraded: with one of them, non-inferior is enough.
DEGRADATION_TRIGGERS = ("drift", "decay")


@dataclass(frozen=True)
class Check:
    """One gate check with its evidence."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "name": self.name,
                "passed": self.passed,
                "value": self.value,
                "threshold": self.threshold,
                "detail": self.detail,
            }
        )


@dataclass(frozen=True)
class GateResult:
    """Every check, the DeLong comparison and the verdict."""

    passed: bool
    checks: tuple[Check, ...]
    comparison: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def summary(self) -> str:
        """One line: passed, or the failed checks' details."""
        if self.passed:
            return "passed: " + "; ".join(c.detail for c in self.checks)
        return "failed: " + "; ".join(c.detail for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary,
            "checks": [c.to_dict() for c in self.checks],
            "comparison": self.comparison,
        }


def _rows_check(y: np.ndarray, settings: GateSettings) -> Check:
    n = len(y)
    # A missing label (NaN) must fail the check, not raise out of the gate from int(NaN).
    invalid = int((~np.isin(y, (0.0, 1.0))).sum())
    if invalid:
        return Check(
            "rows",
            False,
            {"rows": n, "invalid_labels": invalid},
            settings.min_rows,
            f"{n:,} rows but {invalid:,} labels missing or not 0/1: every compared row needs "
            "a matured label (1 = bad, 0 = good)",
        )
    bad = int(y.sum())
    ok = n >= settings.min_rows and 2 <= bad <= n - 2
    return Check(
        "rows",
        ok,
        {"rows": n, "bads": bad},
        settings.min_rows,
        f"{n:,} labelled rows ({bad:,} bad)"
        + ("" if ok else f": need at least {settings.min_rows:,} with both outcomes"),
    )


def _auc_checks(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    settings: GateSettings,
    triggers: Sequence[str],
) -> tuple[list[Check], dict[str, Any]]:
    cmp = compare_auc(y, champion, challenger, margin=settings.margin, alpha=settings.alpha)
    diff = f"AUC {cmp.auc_challenger:.4f} vs champion {cmp.auc_champion:.4f} (diff {cmp.diff:+.4f})"
    non_inferior = Check(
        "non_inferior",
        cmp.noninferior,
        {"diff": cmp.diff, "ci_low": cmp.ci_low, "p": cmp.p_noninferiority},
        {"margin": settings.margin, "alpha": settings.alpha},
        f"{diff}, non-inferiority p={cmp.p_noninferiority:.3g}"
        + (" < " if cmp.noninferior else " ≥ ")
        + f"{settings.alpha} at margin {settings.margin}",
    )
    degraded = [t for t in triggers if t in DEGRADATION_TRIGGERS]
    if cmp.superior:
        why = f"better by DeLong (p={cmp.p_superiority:.3g} < {settings.alpha})"
    elif degraded:
        why = (
            f"not better by DeLong (p={cmp.p_superiority:.3g}) but brought in by "
            f"{' and '.join(degraded)}"
        )
    else:
        why = (
            f"not better by DeLong (p={cmp.p_superiority:.3g} ≥ {settings.alpha}) and no "
            "drift or decay trigger"
        )
    better = Check(
        "better",
        bool(cmp.superior or degraded),
        {"p_superiority": cmp.p_superiority, "triggers": list(triggers)},
        {"alpha": settings.alpha, "or_triggers": list(DEGRADATION_TRIGGERS)},
        why,
    )
    return [non_inferior, better], cmp.to_dict()


def _calibration_check(
    y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, settings: GateSettings
) -> Check:
    low, high = settings.calibration
    bad_rate = float(y.mean())
    mean, mean_old = float(challenger.mean()), float(champion.mean())
    ratio = mean / bad_rate if bad_rate > 0 else float("inf")
    ratio_old = mean_old / bad_rate if bad_rate > 0 else float("inf")
    within = low <= ratio <= high
    closer = abs(np.log(ratio)) <= abs(np.log(ratio_old))
    ok = bool(within or closer)
    detail = f"mean P(bad) {mean:.4f} / bad rate {bad_rate:.4f} = {ratio:.3f}"
    if within:
        detail += f" within [{low}, {high}]"
    elif closer:
        detail += f" outside [{low}, {high}] but closer to 1 than the champion's {ratio_old:.3f}"
    else:
        detail += f" outside [{low}, {high}] and no closer to 1 than the champion's {ratio_old:.3f}"
    return Check(
        "calibration",
        ok,
        {"mean_predicted": mean, "bad_rate": bad_rate, "ratio": ratio, "champion_ratio": ratio_old},
        [low, high],
        detail,
    )


def _air_table(score: np.ndarray, protected: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    table = fair_lending(score, protected, cutoff=cutoff).table
    # Groups without rows (unused categories) have no AIR and nothing to test.
    return table[~table["is_reference"] & (table["n"] > 0)][["attribute", "group", "air"]]


def _fairness_check(
    champion: np.ndarray,
    challenger: np.ndarray,
    protected: pd.DataFrame | None,
    cutoff: float | None,
    settings: GateSettings,
) -> Check:
    if protected is None or protected.empty or protected.shape[1] == 0:
        return Check("fairness", True, None, settings.min_air, "no protected columns: not tested")
    if cutoff is None:
        return Check(
            "fairness",
            True,
            None,
            settings.min_air,
            "no approval cutoff configured: adverse impact not tested",
        )
    new = _air_table(challenger, protected, cutoff)
    old = _air_table(champion, protected, cutoff)
    both = new.merge(old, on=["attribute", "group"], how="left", suffixes=("", "_champion"))
    # An undefined AIR (the challenger approves no one in the attribute's groups) cannot
    # show the group is treated fairly: it fails, where a NaN comparison would pass it.
    undefined = both[both["air"].isna()]
    if not undefined.empty:
        names = ", ".join(f"{r.attribute}={r.group}" for r in undefined.itertuples())
        return Check(
            "fairness",
            False,
            both.astype(object).where(both.notna(), None).to_dict("records"),
            settings.min_air,
            f"adverse impact ratio undefined at cutoff {cutoff} for {names}: the challenger "
            "approves no one in any group with a recorded value",
        )
    # A group fails when its AIR is below the floor and also below the champion's.
    low = both[(both["air"] < settings.min_air) & ~(both["air"] >= both["air_champion"] - 1e-12)]
    rows = both.astype(object).where(both.notna(), None).to_dict("records")
    if low.empty:
        worst = both["air"].min() if not both.empty else float("nan")
        return Check(
            "fairness",
            True,
            rows,
            settings.min_air,
            f"lowest adverse impact ratio {worst:.3f} at cutoff {cutoff} "
            f"(≥ {settings.min_air} or not below the champion's)",
        )
    names = ", ".join(
        f"{r.attribute}={r.group} AIR {r.air:.3f} (champion {r.air_champion:.3f})"
        for r in low.itertuples()
    )
    return Check(
        "fairness",
        False,
        rows,
        settings.min_air,
        f"adverse impact below {settings.min_air}: {names}",
    )


def _score_psi_check(
    champion: np.ndarray,
    challenger: np.ndarray,
    settings: GateSettings,
    references: tuple[Bins, Bins] | None,
) -> Check:
    limit = settings.score_psi_max
    if references is None:
        value = psi(fit_bins(champion, n_bins=10, kind="numeric"), challenger).value
        ok = value <= limit
        return Check(
            "score_psi",
            ok,
            value,
            limit,
            f"score PSI vs champion {value:.3f}{' ≤ ' if ok else ' > '}{limit}",
        )
    old = psi(references[0], champion).value
    new = psi(references[1], challenger).value
    ok = new <= limit or new <= old
    detail = f"score PSI vs its training scores {new:.3f} (champion's {old:.3f})"
    detail += (
        f" ≤ {limit}"
        if new <= limit
        else (
            f" > {limit} but not above the champion's"
            if ok
            else f" > {limit} and above the champion's"
        )
    )
    return Check("score_psi", ok, {"challenger": new, "champion": old}, limit, detail)


def gate(
    y_true: Any,
    champion: Any,
    challenger: Any,
    *,
    settings: GateSettings | None = None,
    triggers: Sequence[str] = (),
    protected: pd.DataFrame | None = None,
    cutoff: float | None = None,
    score_references: tuple[Bins, Bins] | None = None,
) -> GateResult:
    """Decide whether ``challenger`` may replace ``champion`` (P(bad) scores, same rows).

    ``triggers`` are the loop triggers that fired (``drift``, ``decay``, ``schedule``,
    ``labels``); ``protected`` holds the protected attributes of the same rows (fairness
    tests only); ``cutoff`` is the approval cutoff (approve when P(bad) < cutoff);
    ``score_references`` are the frozen score bins of the champion's and the challenger's
    training scores (``metadata_["drift_reference"]["score"]``) for the stability check.
    """
    settings = settings or GateSettings()
    y = np.asarray(y_true, dtype=float)
    a = np.asarray(champion, dtype=float)
    b = np.asarray(challenger, dtype=float)
    checks = [_rows_check(y, settings)]
    comparison: dict[str, Any] = {}
    if checks[0].passed:
        for name, compute in (
            ("auc", lambda: _auc_checks(y, a, b, settings, triggers)),
            ("calibration", lambda: ([_calibration_check(y, a, b, settings)], None)),
            ("fairness", lambda: ([_fairness_check(a, b, protected, cutoff, settings)], None)),
            (
                "score_psi",
                lambda: ([_score_psi_check(a, b, settings, score_references)], None),
            ),
        ):
            try:
                found, extra = compute()
            except Exception as exc:  # a check that cannot be computed fails the gate
                found, extra = [Check(name, False, None, None, f"{name} not computed: {exc}")], None
            checks.extend(found)
            if extra:
                comparison = extra
    return GateResult(all(c.passed for c in checks), tuple(checks), comparison)


__all__ = ["Check", "GateResult", "gate"]
