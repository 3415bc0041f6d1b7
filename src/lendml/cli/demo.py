"""``lendml demo``: the end-to-end tour on embedded defaults (DuckDB + SQLite + MLflow).

synthesize a lending world → init a project → apply features → point-in-time training set
(with label maturity) → materialize → read online features → train (out-of-time, tracked)
→ evaluation report → register and promote a champion → serve it over HTTP and score
applicants with reasons (every decision in the prediction log) → measure drift of what was
served.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from lendml.pipelines.world import LENDING_FEATURES, world_spine

TRAIN_YAML = """\
# Train a probability-of-default model on the credit_v1 feature service (lendml train).
name: credit_pd
intended_use: Probability of default at application for unsecured consumer loans (demo).
feature_service: credit_v1
spine: data/spine.parquet
label: {column: defaulted, observed_at: observed_at}
protected: [gender, age_group, ethnicity]   # fairness tests only, never model inputs
inputs: {spine_columns: [loan_amount, term_months, stated_income]}
split: {valid_from: "2024-03-01", test_from: "2024-07-01"}
model: {kind: lightgbm, monotone: {fico: -1}}
evaluation: {cutoff: 0.05}             # approve when P(bad) < 5%
"""

SERVING_YAML = """
serving:
  model: credit_pd                  # requests without "model" go to its champion
  watch_interval: 0                 # the demo promotes nothing while serving
  models:
    credit_pd:
      decision: {approve_below: 0.03, decline_from: 0.05}   # refer in between
      unknown_entity: score         # a borrower without online features is scored anyway
"""


def run_demo(
    directory: Path,
    *,
    borrowers: int = 3000,
    loop_borrowers: int = 12_000,
    seed: int = 42,
    console: Console,
) -> None:
    """Run the tour into ``directory`` (created; must be new or empty)."""
    from lendml.datasets import generate_world
    from lendml.features.training_set import Label
    from lendml.project import Project

    console.rule("[bold]lendml demo[/]")
    steps = 12
    project = Project.init(directory, name="lending_demo")
    (project.root / "features.py").write_text(LENDING_FEATURES)
    world = project.root / "data" / "world"
    with console.status(f"1/{steps} Synthesizing a lending world ({borrowers:,} borrowers)…"):
        summary = generate_world(
            world,
            borrowers=borrowers,
            seed=seed,
            months=24,
            shift_month=15,
            outcome_horizon_months=3,
        )
    counts = summary.to_dict().get("row_counts", {})
    console.print(
        f"[green]✓[/] 1/{steps} world written to {world}: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    )

    report = project.apply()
    console.print(
        f"[green]✓[/] 2/{steps} applied {len(report['added'])} definitions "
        f"(feature service credit_v1@{project.get_feature_service('credit_v1').version})"
    )

    spine = world_spine(world)
    spine.to_parquet(project.root / "data" / "spine.parquet")
    cutoff = spine["as_of"].max()
    with console.status(f"3/{steps} Building a point-in-time training set…"):
        ts = project.training_set(
            "credit_v1", spine, label=Label("defaulted", observed_at="observed_at", cutoff=cutoff)
        )
    train_path = project.root / "data" / "training_set.parquet"
    ts.to_parquet(train_path)
    df = ts.to_pandas()
    console.print(
        f"[green]✓[/] 3/{steps} training set: {len(df):,} rows × {df.shape[1]} columns → {train_path} "
        f"({ts.immature_labels:,} rows left out: label not yet observed at {cutoff:%Y-%m-%d})"
    )
    rate = df.groupby(df["fico"].fillna(0) < 620)["defaulted"].mean()
    console.print(
        f"    default rate fico<620: {rate.get(True, float('nan')):.1%} vs "
        f"fico≥620: {rate.get(False, float('nan')):.1%}"
    )

    end = pd.Timestamp(cutoff).ceil("D")
    start = end - pd.Timedelta(days=7)
    with console.status(f"4/{steps} Materializing the last week…"):
        mat = project.materialize(start=start, end=end)
    console.print(
        f"[green]✓[/] 4/{steps} materialized: "
        + ", ".join(
            f"{v} {s['entities']:,} entities / {s['offline_rows']:,} offline rows"
            for v, s in mat.views.items()
        )
    )

    sample = spine.sort_values("as_of").tail(3)
    online = project.online_features(
        "credit_v1",
        [{"borrower_id": int(b)} for b in sample["borrower_id"]],
        as_of=end,
        request=sample[["loan_amount", "stated_income"]].to_dict(orient="records"),
    )
    table = Table(title=f"5/{steps} online features as of {end:%Y-%m-%d %H:%M} UTC")
    shown = ["borrower_id", "fico", "utilization", "tx_count_30d", "spend_90d", "loan_to_income"]
    for c in shown:
        table.add_column(c)
    for rec in online[shown].to_dict(orient="records"):
        table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in rec.values()))
    console.print(table)

    (project.root / "train.yaml").write_text(TRAIN_YAML)
    with console.status(f"6/{steps} Training credit_pd (out-of-time split, tracked in MLflow)…"):
        result = project.train("train.yaml")
    sizes = result.split["sizes"]
    console.print(
        f"[green]✓[/] 6/{steps} trained run {result.run_id}: test AUC {result.auc:.3f} "
        f"(train {sizes['train']:,} / valid {sizes['valid']:,} / test {sizes['test']:,} rows; "
        f"left out {result.split['excluded']})"
    )
    report = result.report_dir / "report.html" if result.report_dir else None
    console.print(f"[green]✓[/] 7/{steps} evaluation report: {report}")
    version = project.registry.register(result.run_id, "credit_pd")
    project.registry.promote(
        "credit_pd", version.version, alias="champion", reason="demo: first model"
    )
    console.print(
        f"[green]✓[/] 8/{steps} registered credit_pd/{version.version} and promoted it to "
        "champion (lendml models history credit_pd)"
    )
    project.close()

    with (project.root / "lendml.yaml").open("a") as fh:
        fh.write(SERVING_YAML)
    applicants = spine.sort_values("as_of").tail(200)
    with Project(project.root) as served:
        _serve_and_score(served, applicants, console=console, step=9, steps=steps)
        _drift(served, console=console, step=10, steps=steps)
    sim = _loop(directory / "simulation", loop_borrowers, console=console, step=11, steps=steps)
    _where(project.root, sim, console=console, step=12, steps=steps)
    console.rule(f"[bold green]done[/] — project in {project.root}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_and_score(
    project: Any, applicants: pd.DataFrame, *, console: Console, step: int, steps: int
) -> None:
    """Start the scoring service on a free local port, score applicants, show decisions."""
    import httpx
    import uvicorn

    from lendml.serving.app import create_app
    from lendml.serving.auth import KeyStore
    from lendml.serving.lifecycle import ModelManager
    from lendml.serving.prediction_log import open_prediction_log

    settings = project.config.serving.model_copy(update={"port": _free_port()})
    keys = KeyStore(project.resolve_path(settings.keys_file))
    token, _ = keys.create(scope="score", name="demo")
    sink = open_prediction_log(project.config.prediction_log, project.root)
    manager = ModelManager(
        project.registry,
        settings=settings,
        services=project.get_feature_service,
        store=project.online_store,
        root=project.root,
        sink=sink,
    )
    server = None
    thread = None
    try:
        manager.start(watch=False)
        app = create_app(manager, keys=keys, sink=sink, settings=settings)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="lendml-demo-server", daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{settings.port}"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for _ in range(300):
                if server.started:
                    break
                time.sleep(0.05)
            decisions: dict[str, int] = {}
            shown: list[dict[str, Any]] = []
            for row in applicants.itertuples(index=False):
                body = {
                    "entity": {"borrower_id": int(row.borrower_id)},
                    "fields": {
                        "loan_amount": float(row.loan_amount),
                        "stated_income": float(row.stated_income),
                        "term_months": int(row.term_months),
                    },
                }
                answer = client.post("/v1/score", json=body)
                answer.raise_for_status()
                out = answer.json()
                decisions[out["decision"]] = decisions.get(out["decision"], 0) + 1
                if out["decision"] != "approve" and len(shown) < 4:
                    shown.append({"borrower_id": int(row.borrower_id), **out})
        table = Table(title=f"{step}/{steps} decisions served over HTTP, with reasons")
        for col in ("borrower", "P(bad)", "decision", "principal reasons"):
            table.add_column(col)
        for out in shown:
            reasons = "; ".join(r["text"] for r in out["reasons"]) or "-"
            table.add_row(
                str(out["borrower_id"]), f"{out['probability']:.3f}", out["decision"], reasons
            )
        console.print(table)
        console.print(
            f"[green]✓[/] {step}/{steps} served credit_pd@champion at {base}: "
            f"{len(applicants)} applicants, "
            + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
            + " (every decision is in the prediction log: lendml log show)"
        )
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=30)
        manager.close()
        sink.close(timeout=60)


def _drift(project: Any, *, console: Console, step: int, steps: int) -> None:
    """Drift of the decisions just served against the champion's training data."""
    from lendml.evaluation.drift import SCORE
    from lendml.monitoring.drift import monitor_drift

    mon = monitor_drift(
        project.registry, project.config.prediction_log, project.root, "credit_pd@champion"
    )
    latest = mon.latest
    alerts = ["score" if v == SCORE else str(v) for v in latest.loc[latest["alert"], "variable"]]
    console.print(
        f"[green]✓[/] {step}/{steps} drift of the {int(latest['n'].iloc[0])} served decisions "
        f"against training: {len(latest)} variables measured, "
        + (f"alerts: {', '.join(alerts)}" if alerts else "no alert")
        + " (lendml monitor drift --model credit_pd@champion)"
    )


def _loop(root: Path, borrowers: int, *, console: Console, step: int, steps: int) -> Any:
    """Months of a world with a regime shift, served and run through the loop."""
    from lendml.pipelines.simulate import SimulationSettings, simulate

    settings = SimulationSettings(
        borrowers=borrowers, months=24, shift_month=15, first_champion_month=11
    )
    console.print(
        f"[bold]{step}/{steps}[/] the loop over simulated months: {borrowers:,} borrowers, "
        f"regime shift at month {settings.shift_month}, outcomes known "
        f"{settings.horizon_months} months after application; each month is served by the "
        "champion of the day, then a loop pass runs"
    )
    with console.status(f"{step}/{steps} simulating…") as status:

        def progress(text: str) -> None:
            status.update(f"{step}/{steps} {text}")
            if text[:4].isdigit():
                console.print(f"    {text}", highlight=False)

        result = simulate(root, settings=settings, progress=progress)
    table = Table(title=f"{step}/{steps} what the loop did")
    for col in ("outcome", "held", "evidence"):
        table.add_column(col, overflow="fold")
    o = result.outcomes
    d, pr, orc, q = o["drift_detected"], o["promoted_after_shift"], o["oracle"], o["quiet_periods"]
    rows = [
        (
            "drift alert after the shift",
            d["passed"],
            f"first at {str(d['first_alert'])[:10]}: {', '.join(d['alerts'][:4])}",
        ),
        (
            "challenger promoted on post-shift labels",
            pr["passed"],
            ", ".join(f"v{x['version']} {str(x['as_of'])[:10]}" for x in pr["promotions"])
            or "none",
        ),
        (
            "champion within 0.01 AUC of a post-shift oracle",
            orc["passed"],
            f"{orc['auc']['champion']:.3f} vs {orc['auc']['oracle']:.3f} "
            f"(first champion {orc['auc']['first_champion']:.3f})",
        ),
        (
            "no promotion in quiet periods unless better",
            q["passed"],
            f"{len(q['rejections'])} challengers rejected by the gate",
        ),
    ]
    for name, ok, text in rows:
        table.add_row(name, "[green]yes[/]" if ok else "[yellow]no[/]", text)
    console.print(table)
    console.print(
        f"[green]✓[/] {step}/{steps} {len(result.passes) - 1} loop passes; every trigger, "
        f"gate and promotion with its evidence: lendml loop history -p {root}"
    )
    return result


def _where(root: Path, sim: Any, *, console: Console, step: int, steps: int) -> None:
    table = Table(title=f"{step}/{steps} where everything is")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    for what, where in (
        ("evaluation report (first model)", root / "reports" / "credit_pd" / "report.html"),
        ("simulation report (drift, AUC by vintage, promotions)", sim.report),
        ("loop audit trail", sim.root / "data" / "loop" / "audit.jsonl"),
        ("challenger reports", sim.root / "reports" / "loop"),
        ("prediction log", root / "data" / "prediction_log"),
        ("runs and registry (MLflow)", root / "data" / "mlflow.db"),
    ):
        table.add_row(what, str(where))
    console.print(table)
