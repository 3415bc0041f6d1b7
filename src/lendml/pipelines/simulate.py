"""``lendml simulate``: months of the synthetic lending world replayed through the whole loop.

Each simulated month:

1. **serve** — the month's applications are scored by the champion of the day through the
   serving scorer (same decisions, reasons and prediction-log records as the HTTP service),
   with the feature values the online store held at each application's time (the
   point-in-time training set computes exactly those), and logged at their application time;
2. **loop** — a pass at the month's end (:func:`lendml.pipelines.loop.run_pass`): refresh,
   triggers (drift of what was served, realised decay on matured labels, schedule),
   challenger, gate, promotion. Labels become known only at their ``observed_at``.

Afterwards the simulation measures what the issue asks of the loop, on one time axis:
drift detected within one window of the regime shift, a challenger promoted once post-shift
labels mature, the promoted champion's post-shift AUC against an *oracle* trained on
post-shift data (with every outcome the world knows), and no promotion in quiet periods.
Declined applicants have outcomes in a synthetic world; the loop still sees only what a
lender would (``selection=True``: labels of declined applications are withheld).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lendml.evaluation import auc_delong, jsonable
from lendml.pipelines.loop import bootstrap_champion, run_pass
from lendml.pipelines.world import PROTECTED, create_world_project

MODEL = "credit_pd"
CHALLENGER_YAML = """\
# The loop's challenger recipe: the split dates are set by each pass (loop.window).
name: credit_pd
intended_use: Probability of default at application (synthetic lending world).
feature_service: credit_v1
spine: data/spine.parquet
label: {column: defaulted, observed_at: observed_at}
protected: [gender, age_group, ethnicity]   # fairness tests only, never model inputs
inputs: {spine_columns: [loan_amount, term_months, stated_income]}
model: {kind: lightgbm, monotone: {fico: -1}}
evaluation: {cutoff: 0.10}
"""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SimulationSettings:
    """The world and the replay."""

    borrowers: int = 40_000
    seed: int = 7
    months: int = 30
    shift_month: int = 18
    horizon_months: int = 3
    first_champion_month: int = 12  # the first champion is trained at this month's start
    approve_below: float = 0.10
    decline_from: float = 0.20
    selection: bool = True  # the loop learns only from approved (and explored) loans
    explore_percent: float = 0.0
    trials: int = 0
    window_train: str = "365d"
    window_valid: str = "30d"
    window_test: str = "60d"
    # applications in the world's first days are left out: their 90-day feature windows
    # would see a partial history (the world starts with no transactions before it)
    warm_up_days: int = 90


@dataclass
class SimulationResult:
    """Every pass, every served month, and the four outcomes with their figures."""

    root: Path
    passes: list[dict[str, Any]] = field(default_factory=list)
    vintages: pd.DataFrame = field(default_factory=pd.DataFrame)
    outcomes: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "root": str(self.root),
                "passes": self.passes,
                "vintages": self.vintages,
                "outcomes": self.outcomes,
                "report": str(self.report) if self.report else None,
            }
        )


def _month(start: pd.Timestamp, k: int) -> pd.Timestamp:
    return start + pd.DateOffset(months=k)


def _write_config(root: Path, s: SimulationSettings) -> None:
    path = root / "lendml.yaml"
    raw = yaml.safe_load(path.read_text())
    decision: dict[str, Any] = {"approve_below": s.approve_below, "decline_from": s.decline_from}
    if s.explore_percent:
        decision["explore"] = {"percent": s.explore_percent, "max_probability": 0.6}
    raw["serving"] = {
        "model": MODEL,
        "watch_interval": 0,
        "models": {MODEL: {"decision": decision, "unknown_entity": "score"}},
    }
    raw["loop"] = {
        "train_config": "train.yaml",
        "every": "1d",
        "trials": s.trials,
        "window": {"train": s.window_train, "valid": s.window_valid, "test": s.window_test},
        "triggers": {
            "schedule": "180d",
            "drift": True,
            "drift_window": "30d",
            "decay_auc_drop": 0.02,
        },
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "train.yaml").write_text(CHALLENGER_YAML)


class _Server:
    """The serving scorer of the champion of the day, logging to the prediction log."""

    def __init__(self, project: Any) -> None:
        from lendml.serving.prediction_log import open_prediction_log

        self.project = project
        self.sink = open_prediction_log(project.config.prediction_log, project.root)
        self.deployment: Any = None

    def deploy(self) -> None:
        from lendml.serving.policy import ServingPolicy
        from lendml.serving.scorer import Deployment

        info = self.project.registry.resolve(f"{MODEL}@champion")
        if self.deployment is not None and self.deployment.version == info.version:
            return
        loaded = self.project.registry.load(info.ref)
        settings = self.project.config.serving.for_model(MODEL)
        policy = ServingPolicy.from_settings(settings, root=self.project.root)
        self.deployment = Deployment.build(
            loaded,
            policy=policy,
            services=self.project.get_feature_service,
            store=self.project.online_store,
        )

    def serve(self, spine: pd.DataFrame) -> pd.DataFrame:
        """Score and log these applications; return their decisions."""
        if spine.empty:
            return pd.DataFrame(columns=["application_id", "version", "probability", "decision"])
        self.deploy()
        ts = self.project.training_set("credit_v1", spine.drop(columns=["defaulted"]))
        frame = ts.to_pandas().set_index("application_id").loc[spine["application_id"]]
        frame = frame.reset_index()
        names = self.deployment.names
        rows = frame[names].astype(object).where(frame[names].notna(), None)
        entities = [{"borrower_id": int(b)} for b in frame["borrower_id"]]
        results = self.deployment.score_features(entities, rows.to_dict("records"))
        out = []
        for app_id, at, res in zip(frame["application_id"], frame["as_of"], results, strict=True):
            self.sink.submit(res.to_record(f"sim-{uuid.uuid4().hex[:16]}", at.to_pydatetime()))
            out.append(
                {
                    "application_id": app_id,
                    "version": res.version,
                    "probability": res.probability,
                    "decision": res.decision,
                    "explore": res.explore,
                }
            )
        self.sink.flush(timeout=120)
        return pd.DataFrame(out)

    def close(self) -> None:
        self.sink.close(timeout=120)


def simulate(
    root: str | os.PathLike[str],
    *,
    settings: SimulationSettings | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Build the world project at ``root`` (new or empty), replay it, write the report."""
    from lendml.project import Project

    s = settings or SimulationSettings()
    _check(s)
    say = progress or (lambda text: None)
    root = Path(root)
    say(f"synthesizing {s.borrowers:,} borrowers over {s.months} months (shift at {s.shift_month})")
    project, world = create_world_project(
        root,
        name="simulation",
        borrowers=s.borrowers,
        seed=s.seed,
        months=s.months,
        shift_month=s.shift_month,
        outcome_horizon_months=s.horizon_months,
    )
    project.close()
    _write_config(root, s)
    start = pd.Timestamp(world["config"]["start"], tz="UTC").floor("D")
    truth = pd.read_parquet(root / "data" / "spine.parquet")
    truth["as_of"] = pd.to_datetime(truth["as_of"], utc=True)
    truth = truth[truth["as_of"] >= start + pd.Timedelta(days=s.warm_up_days)]
    truth = truth.reset_index(drop=True)
    _write_spine(root, truth)
    shift_at = _month(start, s.shift_month)
    known = truth.copy()  # the spine as the lender sees it
    served: list[pd.DataFrame] = []
    result = SimulationResult(root=root)
    with Project(root) as p:
        first = _month(start, s.first_champion_month)
        say(f"training the first champion as of {first:%Y-%m-%d}")
        boot = bootstrap_champion(p, as_of=first)
        result.passes.append(_pass_row(boot, first, shift_at))
        server = _Server(p)
        try:
            for k in range(s.first_champion_month + 1, s.months + 1):
                begin, end = _month(start, k - 1), _month(start, k)
                month = truth[(truth["as_of"] >= begin) & (truth["as_of"] < end)]
                t0 = time.perf_counter()
                decisions = server.serve(month)
                served.append(decisions.assign(month=begin))
                if s.selection and not decisions.empty:
                    # a declined (or referred) application is never booked: no outcome
                    booked = decisions["decision"] == "approve"
                    unbooked = set(decisions.loc[~booked, "application_id"])
                    known.loc[known["application_id"].isin(unbooked), "defaulted"] = np.nan
                    _write_spine(root, known)
                serve_s = time.perf_counter() - t0
                res = run_pass(p, as_of=end)
                row = _pass_row(res, end, shift_at)
                row.update(
                    served=len(decisions),
                    approve_rate=float((decisions["decision"] == "approve").mean())
                    if len(decisions)
                    else None,
                    serve_seconds=round(serve_s, 2),
                )
                result.passes.append(row)
                say(
                    f"{end:%Y-%m}: served {len(decisions):,}, champion v{row['champion']}, "
                    f"pass {row['status']} ({', '.join(row['fired']) or 'no trigger'})"
                )
        finally:
            server.close()
        log = pd.concat(served, ignore_index=True)
        result.vintages = _vintages(log, truth)
        result.outcomes = _outcomes(p, result, truth, s, start, shift_at)
    write_json(result, root / "reports" / "simulation" / "simulation.json")
    from lendml.pipelines.simreport import write_report

    result.report = write_report(result, root / "reports" / "simulation", shift_at=shift_at)
    return result


def _check(s: SimulationSettings) -> None:
    """Refuse a replay that cannot show the four outcomes, before any work is done."""
    from lendml.errors import ConfigError

    post = s.months - s.shift_month - s.horizon_months
    if not 0 < s.first_champion_month < s.shift_month:
        raise ConfigError(
            f"first_champion_month must be in 1..{s.shift_month - 1} (before the shift at "
            f"month {s.shift_month}); got {s.first_champion_month}."
        )
    # the first champion's windows: 60d test + 30d valid + at least 30d of training rows,
    # all after the warm-up and at least the horizon before its as-of time
    if s.first_champion_month * 30 - s.warm_up_days < 120 + s.horizon_months * 30:
        raise ConfigError(
            f"first_champion_month {s.first_champion_month} leaves no training window: the "
            f"first champion needs labelled months after the {s.warm_up_days}-day warm-up "
            f"and the {s.horizon_months}-month outcome horizon; use at least "
            f"{(s.warm_up_days + 120) // 30 + s.horizon_months}."
        )
    if post < 6:
        raise ConfigError(
            f"{s.months} months with the shift at {s.shift_month} and a {s.horizon_months}-"
            f"month horizon leave {post} month(s) of mature post-shift outcomes; the oracle "
            "needs at least 6 (2 to train on, 3 to test, 1 to validate): add months."
        )


def _write_spine(root: Path, spine: pd.DataFrame) -> None:
    path = root / "data" / "spine.parquet"
    tmp = path.with_name(".spine.parquet.tmp")
    spine.to_parquet(tmp, index=False)
    tmp.replace(path)


def _pass_row(res: Any, as_of: pd.Timestamp, shift_at: pd.Timestamp) -> dict[str, Any]:
    steps = res.steps
    trig = steps.get("triggers", {})
    drift = next((t for t in trig.get("triggers", []) if t["trigger"] == "drift"), {})
    gate = steps.get("gate", {})
    promote = steps.get("promote", {})
    champion = promote.get("version") if res.status == "promoted" else None
    if champion is None:
        champion = steps.get("start", {}).get("champion_version")
    return {
        "as_of": as_of,
        "post_shift": bool(as_of > shift_at),
        "pass_id": res.pass_id,
        "status": res.status,
        "summary": res.summary,
        "fired": trig.get("fired", []),
        "champion": champion,
        "drift_alerts": drift.get("alerts", []),
        "psi": {k: v["psi"] for k, v in (drift.get("psi") or {}).items()},
        "gate": gate.get("summary"),
        "gate_passed": gate.get("passed"),
        "comparison": gate.get("comparison"),
        "seconds": sum(res.timings.values()),
        "timings": res.timings,
    }


def _vintages(log: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Realised AUC per application month of what was served (every outcome, at world end)."""
    joined = log.merge(truth[["application_id", "defaulted"]], on="application_id")
    rows = []
    for month, g in joined.groupby("month"):
        y = g["defaulted"].to_numpy(dtype=float)
        ok = 2 <= y.sum() <= len(y) - 2
        rows.append(
            {
                "month": month,
                "applications": len(g),
                "bad_rate": float(y.mean()),
                "auc": float(auc_delong(y, g["probability"]).auc) if ok else None,
                "approve_rate": float((g["decision"] == "approve").mean()),
                "versions": sorted({int(v) for v in g["version"]}),
            }
        )
    return pd.DataFrame(rows)


def _outcomes(
    p: Any,
    result: SimulationResult,
    truth: pd.DataFrame,
    s: SimulationSettings,
    start: pd.Timestamp,
    shift_at: pd.Timestamp,
) -> dict[str, Any]:
    passes = result.passes[1:]
    # 1. drift detected within one monitoring window of the shift
    after = [r for r in passes if r["as_of"] > shift_at]
    detected = next((r for r in after if "drift" in r["fired"]), None)
    windows = (after.index(detected) + 1) if detected else None
    # 2. a challenger promoted once post-shift labels matured
    promoted = [r for r in after if r["status"] == "promoted"]
    # the first pass whose newest window holds post-shift labels comes after this
    mature_from = _month(shift_at, s.horizon_months)
    promoted_mature = [r for r in promoted if r["as_of"] > mature_from]
    # 4. quiet periods: before the shift, every promotion was better by DeLong
    before = [r for r in passes if r["as_of"] <= shift_at]
    quiet_promotions = [
        r
        for r in before
        if r["status"] == "promoted" and not (r["comparison"] or {}).get("superior")
    ]
    rejected = [
        {"as_of": r["as_of"], "why": r["gate"]} for r in passes if r["status"] == "rejected"
    ]
    # 3. the promoted champion vs an oracle trained on post-shift data
    oracle = _oracle(p, truth, s, start, shift_at)
    return {
        "drift_detected": {
            "passed": bool(detected and windows == 1),
            "first_alert": detected["as_of"] if detected else None,
            "windows_after_shift": windows,
            "alerts": detected["drift_alerts"] if detected else [],
        },
        "promoted_after_shift": {
            "passed": bool(promoted_mature),
            "post_shift_labels_mature_from": mature_from,
            "promotions": [{"as_of": r["as_of"], "version": r["champion"]} for r in promoted],
        },
        "oracle": oracle,
        "quiet_periods": {
            "passed": not quiet_promotions,
            "passes_before_shift": len(before),
            "promotions_not_better": [r["as_of"] for r in quiet_promotions],
            "rejections": rejected,
        },
    }


def _oracle(
    p: Any, truth: pd.DataFrame, s: SimulationSettings, start: pd.Timestamp, shift_at: pd.Timestamp
) -> dict[str, Any]:
    """AUC of the final champion and of a model trained on post-shift data, same rows."""
    from lendml.pipelines.loop import score_frame
    from lendml.training.run import split_service_frame, train_service_frame
    from lendml.training.trainer import binary_target

    world_end = _month(start, s.months)
    eval_until = world_end - pd.DateOffset(months=s.horizon_months)
    eval_from = eval_until - pd.DateOffset(months=3)
    oracle_path = p.root / "data" / "oracle_spine.parquet"
    truth.to_parquet(oracle_path, index=False)  # every outcome: the oracle's privilege
    cfg = p.train_config("train.yaml")
    cfg = cfg.model_copy(
        update={
            "name": f"{MODEL}_oracle",
            "spine": str(oracle_path),
            "label": cfg.label.model_copy(update={"cutoff": world_end.isoformat()}),
            "split": cfg.split.model_copy(
                update={
                    "train_from": shift_at.isoformat(),
                    "valid_from": (eval_from - pd.DateOffset(months=2)).isoformat(),
                    "test_from": eval_from.isoformat(),
                    "test_until": eval_until.isoformat(),
                    "labels_known_at": "cutoff",
                }
            ),
        }
    )
    data = p.service_frame(cfg)
    trained = train_service_frame(
        data,
        cfg,
        tracker=p.tracker,
        project=p.config.name,
        report_dir=p.root / "reports" / "oracle",
    )
    y_all = binary_target(data.frame[cfg.label.column], cfg.label.positive)
    split = split_service_frame(data, cfg, y_all)
    test = data.frame.iloc[split.test]
    y = y_all[split.test]
    champion = p.registry.load(f"{MODEL}@champion")
    first = p.registry.load(f"{MODEL}/1")
    auc = {
        "oracle": float(auc_delong(y, score_frame(trained.model, test)).auc),
        "champion": float(auc_delong(y, score_frame(champion.model, test)).auc),
        "first_champion": float(auc_delong(y, score_frame(first.model, test)).auc),
    }
    gap = auc["oracle"] - auc["champion"]
    return {
        "passed": gap <= 0.01,
        "window": [eval_from, eval_until],
        "rows": len(y),
        "bads": int(y.sum()),
        "auc": auc,
        "champion_version": champion.info.version,
        "gap": gap,
    }


def write_json(result: SimulationResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    tmp.replace(path)
    return path


__all__ = ["PROTECTED", "SimulationResult", "SimulationSettings", "simulate", "write_json"]
