"""Calibration reports: Markdown, HTML and PNG plots in a directory, and the MLflow run.

Plots (matplotlib, Agg backend): the confusion matrix, judge vs human score
distributions, a reliability curve (mean human value per judge level, raw and after the
calibration map), and the agreement figures with their intervals beside the human
ceiling.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from judge.calibration.agreement import Estimate
    from judge.calibration.calibrate import CalibrationOutcome

PLOTS = ("confusion.png", "distributions.png", "reliability.png", "agreement.png")


def _fmt(e: Estimate | dict[str, Any] | None) -> str:
    if e is None:
        return "n/a"
    d = e if isinstance(e, dict) else e.to_dict()
    if d["value"] is None:
        return "n/a"
    if d["low"] is None:
        return f"{d['value']:.3f}"
    return f"{d['value']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def _tables(o: CalibrationOutcome) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table in the report."""
    t: list[tuple[str, list[str], list[list[str]]]] = []
    t.append(("Agreement with the human consensus", ["figure", "value [95% CI]", "n"],
              [[k, _fmt(v), str(v.n)] for k, v in o.agreement.estimates.items()]))
    if o.ceiling is not None:
        t.append(("Human ceiling (leave-one-out)", ["figure", "typical human", "judge",
                                                    "gap (human − judge)"],
                  [[k, _fmt(f["human"]), _fmt(f["judge"]), _fmt(f["gap"])]
                   for k, f in o.ceiling.figures.items()]))
        if o.ceiling.human_agreement is not None:
            t.append(("Human–human agreement", ["figure", "value [95% CI]"],
                      [[k, _fmt(v)] for k, v in o.ceiling.human_agreement.estimates.items()]))
    if o.map_fit is not None:
        mf = o.map_fit
        t.append((f"Calibration map ({mf.map.kind}), held-out over {mf.folds} folds",
                  ["figure", "before", "after", "improvement"],
                  [[k, _fmt(mf.before[k]), _fmt(mf.after[k]), _fmt(mf.improvement[k])]
                   for k in mf.before]))
    rows = []
    for name, p in o.probes.items():
        if isinstance(p, str):
            rows.append([name, "skipped", p])
        else:
            rows.append([name, "DETECTED" if p.detected else "not detected", p.detail])
    t.append(("Bias probes", ["probe", "result", "detail"], rows))
    if o.alignment is not None:
        a = o.alignment
        t.append(("Alignment (held-out split)", ["version", a.before.primary, "kept"],
                  [[a.old_version, _fmt(a.before.kappa), ""],
                   [a.new_version, _fmt(a.after.kappa), "yes" if a.kept else "no"]]))
    t.append(("Gate", ["approved", "reason"],
              [["yes" if o.approved else "no", r] for r in o.gate.reasons]))
    return t


def _plots(o: CalibrationOutcome, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, names = o.scale, o.scale.level_names
    written = []
    # confusion matrix (rows human, columns judge)
    conf = np.asarray(o.agreement.confusion or [[0]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), v in np.ndenumerate(conf):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xlabel("judge")
    ax.set_ylabel("human consensus")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=90)
    plt.close(fig)
    written.append("confusion.png")
    # distributions
    hl, jl = scale.to_level(o.human), scale.to_level(o.judge)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(x - 0.2, [(hl == c).sum() for c in scale.codes], 0.4, label="human consensus")
    ax.bar(x + 0.2, [(jl == c).sum() for c in scale.codes], 0.4, label="judge")
    ax.set_xticks(x, names)
    ax.set_ylabel("items")
    ax.set_title("Score distributions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "distributions.png", dpi=90)
    plt.close(fig)
    written.append("distributions.png")
    # reliability: mean human value per judge level, raw and calibrated
    hv = scale.to_value(o.human)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    lv = scale.level_values
    ax.plot([lv[0], lv[-1]], [lv[0], lv[-1]], ls="--", c="grey", label="ideal")
    for label, pred in _predictions(o):
        pl = scale.to_level(pred)
        xs, ys = [], []
        for c in scale.codes:
            sel = pl == c
            if sel.any():
                xs.append(float(scale.to_value(np.array([c]))[0]))
                ys.append(float(hv[sel].mean()))
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("judge verdict")
    ax.set_ylabel("mean human value")
    ax.set_title("Reliability")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=90)
    plt.close(fig)
    written.append("reliability.png")
    # agreement with intervals beside the ceiling
    rows: list[tuple[str, Estimate]] = list(o.agreement.estimates.items())
    if o.ceiling is not None:
        rows += [(f"ceiling: typical human {o.ceiling.stat}", o.ceiling.human),
                 (f"ceiling: judge {o.ceiling.stat}", o.ceiling.judge)]
    rows = [(k, e) for k, e in rows if math.isfinite(e.value)]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.4))
    for i, (k, e) in enumerate(rows):
        # a percentile interval need not contain the point estimate: clamp at 0
        lo = max(0.0, e.value - e.low) if math.isfinite(e.low) else 0
        hi = max(0.0, e.high - e.value) if math.isfinite(e.high) else 0
        ax.errorbar(e.value, i, xerr=[[lo], [hi]], fmt="o",
                    color="tab:red" if k.startswith("ceiling") else "tab:blue")
    ax.set_yticks(range(len(rows)), [k for k, _ in rows])
    ax.set_title("Agreement (95% CI)\nbeside the human ceiling", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "agreement.png", dpi=90)
    plt.close(fig)
    written.append("agreement.png")
    return written


def _predictions(o: CalibrationOutcome) -> list[tuple[str, np.ndarray]]:
    preds = [("judge (raw)", o.judge)]
    if o.map_fit is not None:
        from judge.calibration.maps import IsotonicMap

        m = o.map_fit.map
        cal = np.asarray(m.apply(o.judge), float) if isinstance(m, IsotonicMap) \
            else m.apply_codes(o.judge)
        preds.append(("judge (calibrated, in-sample)", cal))
    return preds


def write_report(o: CalibrationOutcome, out: str | Path) -> Path:
    """Write report.md, report.html, figures.json and the PNG plots to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(o, out)
    title = f"Calibration of {o.judge_model} on {o.rubric.id} {o.rubric.version}"
    head = [f"rubric hash `{o.rubric.content_hash[:16]}`, prompt hash "
            f"`{(o.prompt_hash or 'none')[:24]}`, split `{o.split}`, verdicts from "
            f"{o.source} ({o.provider_calls} provider calls), {o.n_used} items.",
            f"**{'APPROVED' if o.approved else 'NOT APPROVED'}** "
            f"(min kappa {o.options.min_kappa:g}, max gap {o.options.max_gap:g})."]
    if o.map_fit is not None and "mae" in o.map_fit.before:
        head.append(f"Held-out MAE before the map {_fmt(o.map_fit.before['mae'])}, after "
                    f"{_fmt(o.map_fit.after['mae'])}.")
    md = [f"# {title}", "", *[h + "\n" for h in head]]
    body = [f"<h1>{html.escape(title)}</h1>", *[f"<p>{html.escape(h)}</p>" for h in head]]
    for name, header, rows in _tables(o):
        md += [f"## {name}", "", "| " + " | ".join(header) + " |",
               "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        md.append("")
        body.append(f"<h2>{html.escape(name)}</h2><table border='1'><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r)
                              + "</tr>" for r in rows) + "</table>")
    for n in o.notes:
        md.append(f"- note: {n}")
        body.append(f"<p>note: {html.escape(n)}</p>")
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    body += [f"<img src='{p}' alt='{p}'>" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body>{''.join(body)}</body></html>\n", encoding="utf-8")
    (out / "figures.json").write_text(json.dumps(o.to_dict(), indent=2, default=str) + "\n",
                                      encoding="utf-8")
    return out


def log_to_mlflow(o: CalibrationOutcome, report_dir: Path | None) -> str:
    """Log the calibration as an MLflow run; returns the run id.

    Raises:
        judge.tracking.TrackingError: MLflow unreachable or refusing.
    """
    from judge.tracking import log_calibration

    return log_calibration(
        rubric_id=o.rubric.id, judge_model=o.judge_model, rubric_hash=o.rubric.content_hash,
        prompt_hash=o.prompt_hash, split=o.split, stats=o.metrics(),
        rubric_version=o.rubric.version,
        calibration_id=None if o.record is None else str(o.record.id),
        report_dir=report_dir,
        params={"min_kappa": o.options.min_kappa, "max_gap": o.options.max_gap,
                "folds": o.options.folds, "seed": o.options.seed, "source": o.source,
                "n_boot": o.options.n_boot})
