"""The simulation's HTML report: drift, realised AUC and promotions on one time axis.

One self-contained page (inline SVG, no external reference): score PSI and per-feature PSI
at every pass, realised AUC and bad rate by application month, the regime shift and every
promotion marked on each plot, the four outcomes with their figures, and every pass's
decision with the gate's reason. ``simulation.json`` beside it holds every figure.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from lendml.evaluation.plots import figure, to_svg

SHIFT = "#8e44ad"
PROMOTE = "#27ae60"


def _events(ax: Any, shift_at: pd.Timestamp, promotions: list[pd.Timestamp]) -> None:
    ax.axvline(shift_at, color=SHIFT, linestyle="--", linewidth=1.2, label="regime shift")
    for i, when in enumerate(promotions):
        ax.axvline(when, color=PROMOTE, linewidth=1.0, label="promotion" if i == 0 else None)


def _naive(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.tz_localize(None)


def _score_psi_svg(passes: pd.DataFrame, shift_at: Any, promotions: list[Any]) -> str:
    fig, ax = figure(9.0, 3.2)
    psi = passes["psi"].apply(lambda d: (d or {}).get("score"))
    ax.plot(
        passes["as_of"], psi, marker="o", color="#c0392b", label="score PSI (served vs training)"
    )
    alerts = passes[passes["fired"].apply(lambda f: "drift" in f)]
    ax.scatter(
        alerts["as_of"],
        psi[alerts.index],
        s=70,
        facecolors="none",
        edgecolors="black",
        label="drift trigger fired",
        zorder=3,
    )
    _events(ax, shift_at, promotions)
    ax.set_ylabel("PSI")
    ax.set_title("Score drift of the served decisions, per monthly window")
    ax.legend(fontsize=8, loc="upper left")
    return to_svg(fig, salt="score-psi")


def _feature_psi_svg(passes: pd.DataFrame, shift_at: Any, promotions: list[Any]) -> str:
    table = pd.DataFrame(
        [{**(d or {}), "as_of": t} for d, t in zip(passes["psi"], passes["as_of"], strict=True)]
    ).set_index("as_of")
    table = table.drop(columns=["score"], errors="ignore")
    fig, ax = figure(9.0, 3.8)
    if not table.empty:
        top = table.max().sort_values(ascending=False).index[:8]
        for name in top:
            ax.plot(table.index, table[name], marker=".", linewidth=1.2, label=name)
    _events(ax, shift_at, promotions)
    ax.set_ylabel("PSI")
    ax.set_title("PSI per feature (the 8 that moved most), per monthly window")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return to_svg(fig, salt="feature-psi")


def _vintage_svg(
    vintages: pd.DataFrame, shift_at: Any, promotions: list[Any], oracle: dict[str, Any]
) -> str:
    fig, ax = figure(9.0, 3.6)
    ax.plot(
        vintages["month"],
        vintages["auc"],
        marker="o",
        color="#2e86c1",
        label="realised AUC of served decisions",
    )
    ax.set_ylabel("AUC")
    ax2 = ax.twinx()
    ax2.bar(
        vintages["month"],
        vintages["bad_rate"],
        width=20,
        alpha=0.25,
        color="#c0392b",
        label="bad rate",
    )
    ax2.set_ylabel("bad rate")
    auc = (oracle or {}).get("auc") or {}
    if auc.get("oracle") is not None:
        ax.axhline(
            auc["oracle"],
            color="#7f8c8d",
            linestyle=":",
            linewidth=1.2,
            label=f"post-shift oracle AUC {auc['oracle']:.3f}",
        )
    _events(ax, shift_at, promotions)
    ax.set_title("Realised AUC and bad rate by application month (all outcomes, at world end)")
    ax.legend(fontsize=8, loc="lower left")
    return to_svg(fig, salt="vintage-auc")


def _check(name: str, ok: bool, text: str) -> str:
    mark = "✓" if ok else "✗"
    colour = "#27ae60" if ok else "#c0392b"
    return (
        f'<tr><td style="color:{colour};font-weight:bold">{mark}</td>'
        f"<td>{html.escape(name)}</td><td>{html.escape(text)}</td></tr>"
    )


def _outcome_rows(o: dict[str, Any]) -> str:
    d, pr, orc, q = (
        o["drift_detected"],
        o["promoted_after_shift"],
        o["oracle"],
        o["quiet_periods"],
    )
    auc = orc["auc"]
    rows = [
        _check(
            "drift detected within one window of the shift",
            d["passed"],
            f"first drift alert at {str(d['first_alert'])[:10]} "
            f"({d['windows_after_shift']} window(s) after the shift): "
            + ", ".join(d["alerts"][:8]),
        ),
        _check(
            "a challenger promoted once post-shift labels matured",
            pr["passed"],
            f"post-shift labels mature from {str(pr['post_shift_labels_mature_from'])[:10]}; "
            "promotions: "
            + (
                ", ".join(f"v{p['version']} at {str(p['as_of'])[:10]}" for p in pr["promotions"])
                or "none"
            ),
        ),
        _check(
            "post-shift AUC of the promoted champion within 0.01 of the oracle",
            orc["passed"],
            f"champion v{orc['champion_version']} {auc['champion']:.4f} vs oracle "
            f"{auc['oracle']:.4f} (gap {orc['gap']:+.4f}; "
            f"first champion {auc['first_champion']:.4f})"
            f" on {orc['rows']:,} applications {str(orc['window'][0])[:10]} – "
            f"{str(orc['window'][1])[:10]}",
        ),
        _check(
            "no promotion in quiet periods unless the challenger is better",
            q["passed"],
            f"{q['passes_before_shift']} passes before the shift; "
            f"{len(q['rejections'])} challengers rejected in all",
        ),
    ]
    return "\n".join(rows)


def _pass_rows(passes: pd.DataFrame) -> str:
    out = []
    for r in passes.itertuples():
        out.append(
            "<tr>"
            f"<td>{r.as_of:%Y-%m-%d}</td><td>{html.escape(str(r.status))}</td>"
            f"<td>{html.escape(', '.join(r.fired) or '—')}</td>"
            f"<td>v{r.champion}</td>"
            f"<td>{html.escape(str(r.gate or r.summary))[:600]}</td>"
            f"<td>{r.seconds:.0f}</td></tr>"
        )
    return "\n".join(out)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lendml simulation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #333; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
svg.figure {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>lendml simulation: {months} months, regime shift at {shift}</h1>
<p>{borrowers} — every month's applications served by the champion of the day and logged;
a loop pass at each month's end. Labels are known only {horizon} months after application.</p>
<h2>Outcomes</h2>
<table>{outcomes}</table>
<h2>Drift</h2>
{score_psi}
{feature_psi}
<h2>Realised performance</h2>
{vintage}
<h2>Every pass</h2>
<table><tr><th>as of</th><th>status</th><th>triggers</th><th>champion after</th>
<th>gate (or why no retrain)</th><th>s</th></tr>
{passes}
</table>
</body></html>
"""


def write_report(result: Any, out_dir: Path, *, shift_at: pd.Timestamp) -> Path:
    """Write ``report.html`` and ``simulation.json`` into ``out_dir``; return the HTML path."""
    from lendml.pipelines.simulate import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    passes = pd.DataFrame(result.passes[1:])
    passes["as_of"] = _naive(passes["as_of"])
    vintages = result.vintages.copy()
    vintages["month"] = _naive(vintages["month"]) + pd.Timedelta(days=15)
    shift = _naive(pd.Series([shift_at])).iloc[0]
    promotions = list(passes.loc[passes["status"] == "promoted", "as_of"])
    n_apps = int(vintages["applications"].sum()) if not vintages.empty else 0
    page = PAGE.format(
        months=len(passes),
        shift=f"{shift:%Y-%m-%d}",
        borrowers=f"{n_apps:,} applications served",
        horizon=3,
        outcomes=_outcome_rows(result.outcomes),
        score_psi=_score_psi_svg(passes, shift, promotions),
        feature_psi=_feature_psi_svg(passes, shift, promotions),
        vintage=_vintage_svg(vintages, shift, promotions, result.outcomes.get("oracle")),
        passes=_pass_rows(passes),
    )
    path = out_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    write_json(result, out_dir / "simulation.json")
    return path
