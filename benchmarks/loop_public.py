"""The continuous-learning loop replayed over public data (issue #5).

Two backtests, each in a throw-away lendml project over the real files in
``../shared/data`` (nothing is copied into the repository):

* ``fdh`` — the Fraud Detection Handbook transactions, week by week. The spine is the
  transactions (``as_of = TX_DATETIME``); the label ``TX_FRAUD`` is observed 7 days later
  (the handbook's label delay); the features are the handbook's customer windows and the
  terminal risk windows with a 7-day offset, plus the amount and the weekend/night flags.
* ``lending-club`` — the Lending Club 2012–2014 sample, year by year. The spine is the
  loans (``as_of`` = 1 January of the issue year, the only date the sample has); the
  application fields are row features of the loan (keyed by ``row_id``); the ten
  post-origination columns are declared ``post_outcome`` and never read. A loan's label
  (its status in the 2018Q4 snapshot) is taken as observed when the last loan of its
  vintage reached term: ``observed_at = 1 January of (issue year + 1) + term``.

Each run trains and promotes a first champion at ``--bootstrap`` (same windows as the
loop), then replays one loop pass per period (``lendml.pipelines.replay``) and prints, per
pass: the as-of time, the triggers that fired, the gate's verdict and reason, the champion
after the pass and the seconds taken; then a summary with the champion's AUC on each
pass's newest out-of-time window next to the first champion's.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/loop_public.py fdh
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/loop_public.py lending-club
    # options: --dir DIR (keep the project; default a temporary folder), --schedule 7d,
    # --start/--end/--bootstrap, --json FILE (every figure)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FDH = DATA / "fdh-simulated-transactions" / "transactions.parquet"
LC = DATA / "lendingclub-2012-2014-sample"

FDH_FEATURES = '''\
"""The Fraud Detection Handbook's features over its simulated transactions."""

from lendml import Aggregation, Derived, DerivedView, Entity, FeatureService, FeatureView, Source

tx = Source.parquet({path!r}, timestamp="TX_DATETIME", post_outcome=["TX_FRAUD_SCENARIO"])
customer = Entity("customer", key="CUSTOMER_ID")
terminal = Entity("terminal", key="TERMINAL_ID")

customer_spend = FeatureView(
    "customer_spend", entity=customer, source=tx,
    aggregations=[
        agg
        for d in (1, 7, 30)
        for agg in (
            Aggregation("TX_AMOUNT", "count", window=f"{{d}}d",
                        name=f"CUSTOMER_ID_NB_TX_{{d}}DAY_WINDOW"),
            Aggregation("TX_AMOUNT", "mean", window=f"{{d}}d",
                        name=f"CUSTOMER_ID_AVG_AMOUNT_{{d}}DAY_WINDOW"),
        )
    ],
)
# A fraud is known 7 days after the transaction: the terminal windows end 7 days back.
terminal_risk = FeatureView(
    "terminal_risk", entity=terminal, source=tx,
    aggregations=[
        agg
        for d in (1, 7, 30)
        for agg in (
            Aggregation("TX_FRAUD", "count", window=f"{{d}}d", offset="7d",
                        name=f"TERMINAL_ID_NB_TX_{{d}}DAY_WINDOW"),
            Aggregation("TX_FRAUD", "sum", window=f"{{d}}d", offset="7d",
                        name=f"terminal_nb_fraud_{{d}}d"),
        )
    ],
)
flags = DerivedView(
    "fdh_derived",
    [
        Derived("TX_DURING_WEEKEND", "weekday(as_of) >= 5"),
        Derived("TX_DURING_NIGHT", "hour(as_of) <= 6"),
        *(
            Derived(f"TERMINAL_ID_RISK_{{d}}DAY_WINDOW",
                    f"coalesce(terminal_nb_fraud_{{d}}d / TERMINAL_ID_NB_TX_{{d}}DAY_WINDOW, 0)")
            for d in (1, 7, 30)
        ),
    ],
)
fdh_v1 = FeatureService("fdh_v1", [customer_spend, terminal_risk, flags])
'''

LC_FEATURES = '''\
"""The Lending Club loans: each loan's application fields as row features of the loan."""

from lendml import Entity, Feature, FeatureService, FeatureView, Source

loan = Entity("loan", key="row_id")
loans = Source.parquet(
    "data/lc/lending_club.parquet",
    timestamp="issued_at",
    name="lc_loans",
    # known only after the loan was granted: never features
    post_outcome={post_outcome!r},
    unique_key=["row_id"],
)
application = FeatureView(
    "application", entity=loan, source=loans,
    features=[Feature(c) for c in {features!r}],
)
lc_v1 = FeatureService("lc_v1", [application])
'''


@dataclass(frozen=True)
class Setup:
    """What a backtest needs: the project's files, the loop settings and the pass times."""

    name: str
    model: str
    features_py: str
    train_yaml: dict[str, Any]
    loop: dict[str, Any]
    bootstrap: str
    start: str
    end: str
    every: str
    write_data: Callable[[Path], dict[str, Any]]


# ---------------------------------------------------------------------------- FDH


def fdh_setup(args: argparse.Namespace) -> Setup:
    def write_data(root: Path) -> dict[str, Any]:
        tx = pd.read_parquet(
            FDH,
            columns=[
                "TRANSACTION_ID",
                "CUSTOMER_ID",
                "TERMINAL_ID",
                "TX_DATETIME",
                "TX_AMOUNT",
                "TX_FRAUD",
            ],
        )
        times = pd.to_datetime(tx["TX_DATETIME"]).dt.tz_localize("UTC")
        # The 30-day terminal windows end 7 days back: they hold a full month of history
        # only from 37 days after the first transaction (2018-04-01) on.
        keep = times >= pd.Timestamp(args.spine_from, tz="UTC")
        spine = pd.DataFrame(
            {
                "TRANSACTION_ID": tx["TRANSACTION_ID"][keep],
                "CUSTOMER_ID": tx["CUSTOMER_ID"][keep],
                "TERMINAL_ID": tx["TERMINAL_ID"][keep],
                "as_of": times[keep],
                "TX_AMOUNT": tx["TX_AMOUNT"][keep],
                "TX_FRAUD": tx["TX_FRAUD"][keep].astype("int8"),
                # the handbook's label delay: a fraud is known 7 days after the transaction
                "observed_at": times[keep] + pd.Timedelta(days=7),
            }
        ).reset_index(drop=True)
        spine.to_parquet(root / "data" / "spine.parquet", index=False)
        return {
            "spine_rows": len(spine),
            "spine_from": args.spine_from,
            "fraud_rate": float(spine["TX_FRAUD"].mean()),
        }

    train = {
        "name": "fdh_fraud",
        "feature_service": "fdh_v1",
        "spine": "data/spine.parquet",
        "label": {"column": "TX_FRAUD", "observed_at": "observed_at"},
        "inputs": {
            "spine_columns": ["TX_AMOUNT"],
            # the handbook's 15 inputs: the fraud counts only enter through the risk ratios
            "exclude": [f"terminal_nb_fraud_{d}d" for d in (1, 7, 30)],
        },
        "model": {"kind": "lightgbm"},
        "tuning": {"trials": args.trials},
    }
    loop = {
        "train_config": "train.yaml",
        "every": args.every or "7d",
        "trials": args.trials,
        "window": {
            "train": args.train or "56d",
            "valid": args.valid or "7d",
            "test": args.test or "7d",
        },
        # no prediction log here (nothing is served): drift is off
        "triggers": {
            "schedule": args.schedule or "7d",
            "drift": False,
            "decay_auc_drop": 0.03,
            "min_labels": 300,
        },
        # a week holds ~67,000 transactions and ~550 frauds
        "gate": {"min_rows": args.min_rows or 5000},
    }
    return Setup(
        name="fdh",
        model="fdh_fraud",
        features_py=FDH_FEATURES.format(path=str(FDH)),
        train_yaml=train,
        loop=loop,
        bootstrap=args.bootstrap or "2018-07-23",
        start=args.start or "2018-07-30",
        end=args.end or "2018-10-01",
        every=args.every or "7d",
        write_data=write_data,
    )


# ---------------------------------------------------------------------------- Lending Club


def lc_observed_at(frame: pd.DataFrame) -> pd.Series:
    """When a loan's label is final: the last loan of its vintage reached its term.

    The sample knows only the issue year (``issued_at`` is its 1 January), and the label is
    the status in the 2018Q4 snapshot ("Current" counts as good), which is final once the
    loan reached term. A loan issued on 31 December of year Y reaches a 36-month term by
    1 January Y+4 at the latest: an earlier date would let a pass see labels that were not
    yet known for part of the vintage.
    """
    months = frame["term"].str.extract(r"(\d+)")[0].astype(int)
    base = frame["issued_at"] + pd.DateOffset(years=1)
    return pd.Series(
        [b + pd.DateOffset(months=int(m)) for b, m in zip(base, months, strict=True)],
        index=frame.index,
    )


def lc_setup(args: argparse.Namespace) -> Setup:
    from lendml.datasets import read_lending_club

    lc = read_lending_club(LC, leakage_path=LC)
    frame = lc.frame
    # Three columns are constant in the sample (one all null): nothing to learn from.
    constant = [c for c in lc.feature_columns if frame[c].nunique(dropna=False) <= 1]
    features = [c for c in lc.feature_columns if c not in constant]

    def write_data(root: Path) -> dict[str, Any]:
        from lendml.datasets import export

        export(lc, root / "data" / "lc")
        observed = lc_observed_at(frame)
        spine = pd.DataFrame(
            {
                "row_id": frame["row_id"],
                "as_of": frame["issued_at"],
                "bad": frame["bad"].astype("int8"),
                "observed_at": pd.to_datetime(observed, utc=True),
                "vintage": frame["Issue_Year"].astype(int),
                "loan_term": frame["term"].str.strip(),
            }
        )
        spine.to_parquet(root / "data" / "spine.parquet", index=False)
        table = (
            spine.groupby(["vintage", "loan_term"])
            .agg(
                loans=("bad", "size"), bad_rate=("bad", "mean"), observed_at=("observed_at", "max")
            )
            .reset_index()
        )
        return {
            "spine_rows": len(spine),
            "excluded_constant_columns": constant,
            "post_outcome": list(lc.post_outcome),
            "vintages": [
                {**r, "observed_at": r["observed_at"].isoformat()} for r in table.to_dict("records")
            ],
        }

    train = {
        "name": "lc_pd",
        "feature_service": "lc_v1",
        "spine": "data/spine.parquet",
        "label": {"column": "bad", "observed_at": "observed_at"},
        "model": {"kind": "lightgbm"},
        "tuning": {"trials": args.trials},
    }
    # Every loan of a year shares its 1 January: the windows must put each vintage in one
    # part. The test window (183 days back from the newest mature vintage) holds that
    # vintage only, the validation window (365 days before it) the one before, and the
    # training window every older vintage.
    loop = {
        "train_config": "train.yaml",
        "every": args.every or "365d",
        "trials": args.trials,
        "window": {"train": args.train, "valid": args.valid or "365d", "test": args.test or "183d"},
        "triggers": {
            "schedule": args.schedule or "365d",
            "drift": False,
            "decay_auc_drop": 0.03,
            "min_labels": 300,
        },
        "gate": {"min_rows": args.min_rows or 1000},
    }
    return Setup(
        name="lending-club",
        model="lc_pd",
        features_py=LC_FEATURES.format(post_outcome=list(lc.post_outcome), features=features),
        train_yaml=train,
        loop=loop,
        bootstrap=args.bootstrap or "2018-01-01",
        start=args.start or "2018-01-01",
        end=args.end or "2019-01-01",
        every=args.every or "365d",
        write_data=write_data,
    )


# ---------------------------------------------------------------------------- the run


def build_project(setup: Setup, root: Path) -> dict[str, Any]:
    from lendml import Project

    Project.init(root, name=setup.name.replace("-", "_")).close()
    (root / "features.py").write_text(setup.features_py)
    facts = setup.write_data(root)
    (root / "train.yaml").write_text(yaml.safe_dump(setup.train_yaml, sort_keys=False))
    path = root / "lendml.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["loop"] = setup.loop
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with Project(root) as project:
        project.apply()
    return facts


def mature_by_vintage(root: Path, as_of: pd.Timestamp) -> str:
    """Lending Club: labelled loans per vintage known at ``as_of`` (why passes start late)."""
    spine = pd.read_parquet(root / "data" / "spine.parquet")
    known = spine[spine["observed_at"] <= as_of]
    counts = known.groupby("vintage").size()
    return ", ".join(f"{v}: {n:,}" for v, n in counts.items()) or "none"


def gate_line(result: Any) -> str:
    steps = result.steps
    if "gate" not in steps:
        return "-"
    g = steps["gate"]
    c = g.get("comparison") or {}
    failed = [ch["name"] for ch in g["checks"] if not ch["passed"]]
    head = "passed" if g["passed"] else f"failed ({', '.join(failed)})"
    if not c:
        return head
    return (
        f"{head}: AUC {c['auc_challenger']:.4f} vs {c['auc_champion']:.4f} "
        f"(diff {c['diff']:+.4f}), p_noninf={c['p_noninferiority']:.3g}, "
        f"p_sup={c['p_superiority']:.3g}"
    )


def trigger_line(result: Any) -> str:
    trig = result.steps.get("triggers")
    if trig is None:
        return "-"
    parts = []
    for t in trig["triggers"]:
        mark = "FIRED" if t["fired"] else "quiet"
        if t["trigger"] == "decay" and "realised_auc" in t:
            parts.append(
                f"decay {mark} (champion {t['realised_auc']:.4f} vs {t['champion_test_auc']:.4f}"
                f" at training, z={t['z']:.2f})"
            )
        elif t["trigger"] == "schedule":
            parts.append(f"schedule {mark} ({t.get('value_days')} d)")
        else:
            parts.append(f"{t['trigger']} {mark}")
    return "; ".join(parts)


def newest_window_aucs(
    project: Any, model: str, result: Any, versions: dict[str, int]
) -> dict[str, Any]:
    """AUC of the given versions on the pass's newest out-of-time window (mature labels)."""
    from sklearn.metrics import roc_auc_score

    from lendml.pipelines.loop import score_frame

    ds = result.steps.get("dataset")
    if ds is None:
        return {}
    cfg = project.train_config(project.config.loop.train_config)
    frame = pd.read_parquet(ds["frame"])
    w = ds["windows"]
    t = pd.to_datetime(frame[cfg.as_of], utc=True)
    lo, hi = pd.Timestamp(w["test_from"]), pd.Timestamp(w["test_until"])
    rows = frame[(t >= lo) & (t <= hi) & frame[cfg.label.column].notna()]
    y = rows[cfg.label.column].astype(float).to_numpy()
    out: dict[str, Any] = {"rows": len(rows), "bads": int(y.sum())}
    for label, version in versions.items():
        loaded = project.registry.load(f"{model}/{version}")
        out[label] = float(roc_auc_score(y, score_frame(loaded.model, rows)))
        out[f"{label}_version"] = version
    return out


def run(setup: Setup, root: Path, json_out: Path | None) -> int:
    from lendml import Project
    from lendml.pipelines import replay
    from lendml.pipelines.loop import bootstrap_champion

    t0 = time.perf_counter()
    facts = build_project(setup, root)
    print(f"project {root}: {json.dumps(facts, default=str)}")
    print(f"loop settings: {json.dumps(setup.loop)}")
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)

    with Project(root) as project:
        if setup.name == "lending-club":
            for year in range(2015, 2020):
                when = pd.Timestamp(f"{year}-01-01", tz="UTC")
                print(f"  labelled loans known at {when:%Y-%m-%d}: {mature_by_vintage(root, when)}")
        t = time.perf_counter()
        first = bootstrap_champion(
            project, as_of=setup.bootstrap, reason=f"first champion as of {setup.bootstrap}"
        )
        first_version = first.steps["register"]["version"]
        boot_train = first.steps["train"]
        print(
            f"first champion {setup.model}/{first_version} as of {setup.bootstrap}: windows "
            f"{json.dumps(first.steps['dataset']['windows'])}, split {boot_train['split']}, "
            f"test AUC {boot_train['test_auc']:.4f} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )

        rows: list[dict[str, Any]] = []
        clock = [time.perf_counter()]

        def progress(result: Any) -> None:
            seconds = time.perf_counter() - clock[0]
            clock[0] = time.perf_counter()
            champion = project.registry.resolve(f"{setup.model}@champion").version
            start_version = result.steps["start"]["champion_version"]
            aucs = newest_window_aucs(
                project,
                setup.model,
                result,
                {"champion": start_version, "first": first_version},
            )
            fired = result.steps.get("triggers", {}).get("fired", [])
            row = {
                "as_of": f"{result.as_of:%Y-%m-%d}",
                "status": result.status,
                "fired": fired,
                "triggers": trigger_line(result),
                "gate": gate_line(result),
                "gate_summary": result.steps.get("gate", {}).get("summary"),
                "windows": result.steps.get("dataset", {}).get("windows"),
                "rows_built": result.steps.get("dataset", {}).get("rows"),
                "champion_before": start_version,
                "champion_after": champion,
                "newest_window": aucs,
                "seconds": round(seconds, 1),
                "timings": result.timings,
            }
            rows.append(row)
            print(
                f"pass {row['as_of']}: {row['status']:<10} triggers: {row['triggers']} | "
                f"gate: {row['gate']} | champion v{start_version} -> v{champion} | "
                f"newest window {aucs.get('rows', 0):,} rows ({aucs.get('bads', 0):,} bad): "
                f"champion AUC {aucs.get('champion', float('nan')):.4f}, first "
                f"{aucs.get('first', float('nan')):.4f} | {seconds:.0f} s",
                flush=True,
            )

        replay(project, start=setup.start, end=setup.end, every=setup.every, progress=progress)

    promoted = [r for r in rows if r["status"] == "promoted"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    quiet = [r for r in rows if r["status"] == "no_trigger"]
    print()
    print(
        f"{len(rows)} passes: {len(promoted)} promoted, {len(rejected)} rejected, "
        f"{len(quiet)} without a trigger; total {time.perf_counter() - t0:.0f} s"
    )
    print("| as-of | decision | gate | champion AUC on the newest window | first champion's |")
    print("|---|---|---|---|---|")
    for r in rows:
        a = r["newest_window"]
        print(
            f"| {r['as_of']} | {r['status']} | {r['gate']} | "
            f"{a.get('champion', float('nan')):.4f} (v{r['champion_before']}) | "
            f"{a.get('first', float('nan')):.4f} |"
        )
    diffs = [
        r["newest_window"]["champion"] - r["newest_window"]["first"]
        for r in rows
        if "champion" in r["newest_window"]
    ]
    if diffs:
        print(
            f"champion minus first champion on the newest windows: mean {np.mean(diffs):+.4f}, "
            f"min {min(diffs):+.4f}, max {max(diffs):+.4f}"
        )
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                {
                    "dataset": setup.name,
                    "facts": facts,
                    "loop": setup.loop,
                    "bootstrap": {
                        "as_of": setup.bootstrap,
                        "version": first_version,
                        "windows": first.steps["dataset"]["windows"],
                        "test_auc": boot_train["test_auc"],
                        "split": boot_train["split"],
                    },
                    "passes": rows,
                    "seconds": time.perf_counter() - t0,
                },
                indent=1,
                default=str,
            )
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", choices=["fdh", "lending-club"])
    ap.add_argument(
        "--dir",
        type=Path,
        help="project folder (must be new or empty); "
        "default: a temporary folder, removed at the end",
    )
    ap.add_argument("--bootstrap", help="as-of time of the first champion")
    ap.add_argument("--start", help="first pass")
    ap.add_argument("--end", help="last pass (included)")
    ap.add_argument("--every", help="period between passes (7d for fdh, 365d for lending-club)")
    ap.add_argument("--schedule", help="loop.triggers.schedule (default: the period)")
    ap.add_argument("--train", help="loop.window.train (fdh 56d; lending-club: all history)")
    ap.add_argument("--valid", help="loop.window.valid")
    ap.add_argument("--test", help="loop.window.test")
    ap.add_argument("--trials", type=int, default=0, help="tuning trials per training (0)")
    ap.add_argument("--min-rows", type=int, help="loop.gate.min_rows")
    ap.add_argument(
        "--spine-from",
        default="2018-05-08",
        help="fdh: first transaction of the spine (features warm from here)",
    )
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    args = ap.parse_args(argv)

    for path in (FDH if args.dataset == "fdh" else LC,):
        if not path.exists():
            print(f"error: {path} not found (the public datasets live in ../shared/data)")
            return 2
    setup = fdh_setup(args) if args.dataset == "fdh" else lc_setup(args)
    if args.dir is not None:
        return run(setup, args.dir, args.json)
    tmp = Path(tempfile.mkdtemp(prefix=f"lendml-loop-{args.dataset}-"))
    try:
        return run(setup, tmp / "project", args.json)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
