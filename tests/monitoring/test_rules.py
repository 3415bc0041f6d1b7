"""Alert rules: each fires exactly when its threshold is crossed, and not on noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import MonitoringSettings, load_config
from lendml.errors import ConfigError
from lendml.evaluation.drift import fit_drift_reference
from lendml.monitoring import Outcomes, log_drift, measure_performance
from lendml.monitoring.rules import apply_drift_rules, decay_alerts, drift_alerts

WINDOW = pd.Timestamp("2025-03-03", tz="UTC")


def rules(**monitoring) -> MonitoringSettings:
    return MonitoringSettings.model_validate(monitoring)


def row(**values) -> dict:
    """One (window, variable) of drift_by_window's table: no drift unless overridden."""
    base = {
        "window": WINDOW,
        "variable": "dti",
        "kind": "numeric",
        "n": 1000,
        "psi": 0.0,
        "psi_noise_floor": 0.05,
        "js": 0.0,
        "ks": 0.0,
        "ks_pvalue": 1.0,
        "missing_reference": 0.0,
        "missing_current": 0.0,
        "missing_pvalue": 1.0,
        "unseen_share": math.nan,
        "unseen_levels": "",
    }
    return {**base, **values}


def fired(rows: list[dict], settings: MonitoringSettings) -> list[tuple[str, float]]:
    table = apply_drift_rules(pd.DataFrame(rows), settings.drift)
    alerts = drift_alerts(table, settings.drift)
    return list(zip(alerts["rule"], alerts["value"], strict=True))


def test_psi_fires_at_the_larger_of_the_rule_and_the_noise_floor():
    default = rules()
    below = np.nextafter(0.10, 0)
    assert fired([row(psi=below)], default) == []
    assert fired([row(psi=0.10)], default) == [("psi", 0.10)]
    # a small window: the floor (0.22) is the threshold, the 0.10 rule alone would fire
    assert fired([row(psi=0.20, psi_noise_floor=0.22)], default) == []
    assert fired([row(psi=0.22, psi_noise_floor=0.22)], default) == [("psi", 0.22)]
    fixed = rules(drift={"psi": {"threshold": 0.10, "noise_floor": False}})
    assert fired([row(psi=0.20, psi_noise_floor=0.22)], fixed) == [("psi", 0.20)]
    assert fired([row(psi=0.30)], rules(drift={"psi": None})) == []
    # too few rows: measured, never alerting
    assert fired([row(psi=0.9, n=49)], default) == []
    assert fired([row(psi=0.9, n=10)], rules(drift={"min_rows": 10})) == [("psi", 0.9)]


def test_an_alert_names_rule_variable_window_value_and_threshold():
    settings = rules()
    table = apply_drift_rules(
        pd.DataFrame([row(psi=0.5, psi_noise_floor=0.2, variable="__score__")]), settings.drift
    )
    alert = drift_alerts(table, settings.drift).iloc[0].to_dict()
    assert alert["rule"] == "psi" and alert["variable"] == "score"
    assert alert["window"] == WINDOW and alert["value"] == 0.5 and alert["threshold"] == 0.2
    assert "noise floor 0.200" in alert["detail"]
    assert table.loc[0, "psi_level"] == "significant" and bool(table.loc[0, "alert"])


def test_ks_rule_is_off_by_default_and_fires_below_its_alpha():
    assert fired([row(ks=0.2, ks_pvalue=1e-9)], rules()) == []
    on = rules(drift={"ks_alpha": 0.01})
    assert fired([row(ks=0.2, ks_pvalue=0.0101)], on) == []
    assert fired([row(ks=0.2, ks_pvalue=0.0099)], on) == [("ks", 0.0099)]
    assert fired([row(ks=math.nan, ks_pvalue=math.nan)], on) == []  # a categorical input


def test_missing_rule_needs_both_the_change_and_significance():
    settings = rules()  # change >= 0.02 and p < alpha = 0.01
    assert fired([row(missing_current=0.0199, missing_pvalue=1e-6)], settings) == []
    assert fired([row(missing_current=0.02, missing_pvalue=1e-6)], settings) == [("missing", 0.02)]
    assert fired([row(missing_current=0.10, missing_pvalue=0.02)], settings) == []
    assert fired(
        [row(missing_reference=0.30, missing_current=0.10, missing_pvalue=1e-6)], settings
    ) == [("missing", pytest.approx(-0.20))]
    assert (
        fired([row(missing_current=0.5, missing_pvalue=0)], rules(drift={"missing_change": None}))
        == []
    )


def test_unseen_rule_counts_categorical_inputs_only():
    cat = {"kind": "categorical", "variable": "purpose", "unseen_levels": "crypto"}
    settings = rules()
    assert fired([row(unseen_share=0.0099, **cat)], settings) == []
    assert fired([row(unseen_share=0.01, **cat)], settings) == [("unseen", 0.01)]
    assert fired([row(unseen_share=0.5)], settings) == []  # numeric: no levels
    assert fired([row(unseen_share=0.03, **cat)], rules(drift={"unseen_share": 0.05})) == []


def _log(windows: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A flattened prediction log of unchanged applicants: n decisions a day."""
    days = np.repeat(np.arange(windows), n)
    return pd.DataFrame(
        {
            "time": WINDOW + pd.to_timedelta(days, unit="D"),
            "role": "champion",
            "probability": rng.random(windows * n),
            "features.dti": rng.normal(size=windows * n),
        }
    )


def test_identical_data_at_small_n_does_not_alert_but_the_fixed_rule_would():
    rng = np.random.default_rng(42)
    reference = fit_drift_reference(
        pd.DataFrame({"dti": rng.normal(size=20_000)}), score=rng.random(20_000)
    )
    log = _log(200, 60, rng)
    default = log_drift(log, reference)
    fixed = log_drift(log, reference, rules=rules(drift={"psi": {"noise_floor": False}}))
    n_default, n_fixed = int(default["alert_psi"].sum()), int(fixed["alert_psi"].sum())
    # 400 (window, variable) pairs of unchanged data at 60 rows: the fixed 0.10 rule fires
    # on ~3 in 4; the floor holds it near alpha (measured ~3% at alpha = 1%: the chi-squared
    # approximation is loose with 6 rows a bin)
    assert n_default <= 20, n_default
    assert n_fixed > 200, n_fixed


def test_watch_and_ignore_choose_the_inputs():
    rng = np.random.default_rng(1)
    reference = fit_drift_reference(
        pd.DataFrame({"dti": rng.normal(size=2000), "util": rng.random(2000)}),
        score=rng.random(2000),
    )
    log = _log(1, 100, rng).assign(**{"features.util": rng.random(100)})
    only = log_drift(log, reference, rules=rules(features={"watch": ["util"]}))
    assert set(only["variable"]) == {"util", "__score__"}
    rest = log_drift(log, reference, rules=rules(features={"ignore": ["util", "not_here"]}))
    assert set(rest["variable"]) == {"dti", "__score__"}
    with pytest.raises(ConfigError, match=r"monitoring\.features\.watch names \['utl'\]"):
        log_drift(log, reference, rules=rules(features={"watch": ["utl"]}))


def _vintages(**values) -> pd.DataFrame:
    base = {
        "vintage": "2025-01",
        "months_on_book": 12,
        "decisions": 1000,
        "mature": 1000,
        "bad_rate": 0.1,
        "mean_predicted": 0.1,
        "auc": 0.8,
        "ks": 0.4,
        "brier": 0.08,
        "observed_to_expected": 1.0,
    }
    return pd.DataFrame([{**base, **values}])


def test_decay_fires_exactly_below_the_reference_minus_the_margin():
    settings = rules(decay={"auc_margin": 0.03, "alpha": None, "min_labels": 300})
    line = 0.80 - 0.03

    def decayed(**values):
        out = decay_alerts(_vintages(**values), reference_auc=0.80, settings=settings)
        return out.to_dict("records")

    assert decayed(auc=line) == []
    [alert] = decayed(auc=float(np.nextafter(line, 0)))
    assert alert["rule"] == "decay" and alert["window"] == "2025-01"
    assert alert["threshold"] == pytest.approx(line) and alert["variable"] == "auc"
    assert decayed(auc=0.5, mature=299) == []  # too few mature labels
    months = rules(decay={"alpha": None, "min_months_on_book": 13})
    assert decay_alerts(_vintages(auc=0.5), reference_auc=0.8, settings=months).empty
    assert decay_alerts(_vintages(auc=0.5), reference_auc=None, settings=settings).empty
    off = rules(decay={"auc_margin": None})
    assert decay_alerts(_vintages(auc=0.5), reference_auc=0.8, settings=off).empty


def _served(vintages: int, n: int, rng: np.random.Generator, *, informative: bool = True):
    """Decisions over ``vintages`` months, n a month, with outcomes drawn from the score."""
    months = np.repeat(np.arange(vintages), n)
    time = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(months * 31, unit="D")
    p = rng.beta(2, 6, size=len(months))
    y = (rng.random(len(p)) < (p if informative else 0.25)).astype(int)
    log = pd.DataFrame(
        {"time": time, "role": "champion", "probability": p, "entity.id": np.arange(len(p))}
    )
    outcomes = pd.DataFrame({"id": np.arange(len(p)), "label": y, "observed_at": time})
    return log, Outcomes(outcomes, key="id")


def test_decay_on_small_vintages_of_an_unchanged_model_is_held_by_significance():
    rng = np.random.default_rng(42)
    big_log, big = _served(1, 200_000, rng)
    from sklearn.metrics import roc_auc_score

    true_auc = roc_auc_score(big.frame["label"], big_log["probability"])
    log, outcomes = _served(40, 80, rng)
    kw = {"model": "pd", "as_of": "2030-01-01", "reference_auc": true_auc}
    noisy = measure_performance(
        log, outcomes, rules=rules(decay={"alpha": None, "min_labels": 30}), **kw
    )
    held = measure_performance(log, outcomes, rules=rules(decay={"min_labels": 30}), **kw)
    assert len(noisy.table) == 40
    assert len(noisy.alerts) > 6, len(noisy.alerts)  # point estimates dip on noise
    assert len(held.alerts) <= 3, held.alerts  # one-sided 5%: about 2 of 40 by chance
    # a model that stopped ranking is caught in every vintage, significance or not
    dead_log, dead = _served(3, 1000, rng, informative=False)
    decayed = measure_performance(dead_log, dead, **kw)
    assert list(decayed.alerts["window"]) == ["2024-01", "2024-02", "2024-03"]
    assert decayed.latest_vintage == "2024-03" and len(decayed.latest_alerts) == 1


def test_bad_monitoring_config_is_refused_naming_the_key(tmp_path):
    def load(text: str):
        (tmp_path / "lendml.yaml").write_text("version: 1\n" + text)
        return load_config(tmp_path)

    assert load("").monitoring == MonitoringSettings()
    cases = {
        "monitoring:\n  drift:\n    psi:\n      threshold: -1\n": "monitoring.drift.psi.threshold",
        "monitoring:\n  drift:\n    min_row: 5\n": "monitoring.drift.min_row",
        "monitoring:\n  decay:\n    reference: train\n": "monitoring.decay.reference",
        "monitoring:\n  decay:\n    min_labels: 5\n": "monitoring.decay.min_labels",
        "monitoring:\n  every: M\n": "monitoring.every",
        "monitoring:\n  features: {watch: [dti], ignore: [dti]}\n": "monitoring.features",
    }
    for text, key in cases.items():
        with pytest.raises(ConfigError) as info:
            load(text)
        assert key in str(info.value), (text, str(info.value))
    cfg = load("monitoring:\n  every: W\n  drift:\n    ks_alpha: 0.001\n    psi: null\n")
    assert cfg.monitoring.every == "W" and cfg.monitoring.drift.psi is None
    assert cfg.monitoring.drift.ks_alpha == 0.001
