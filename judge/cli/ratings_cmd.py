"""``judge ratings`` (import, export, stats of human ratings) and ``judge judgments import``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from judge.cli._output import console, emit_json
from judge.errors import JudgeError


@click.group()
def ratings() -> None:
    """Human ratings: import them, export them, and see how much people agree."""


@ratings.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rubric", "-r", "rubric_id", help="Rubric the ratings are on (with FILE).")
@click.option("--map", "mapping", multiple=True,
              help="Ratings mapping: long form item=COL,rater=COL,score=COL (or label=); wide "
                   "form raters=COL1|COL2 or raters=GLOB or values=FIELD; records=PATH for a "
                   "JSON document.")
@click.option("--items-map", "items_mapping", multiple=True,
              help="Item fields of the items in FILE, e.g. input=question,output=answer "
                   "(dotted paths allowed). Default: the rubric's pack's declaration for this "
                   "file, else columns named input, output, reference, context.")
@click.option("--dataset", "dataset_name", help="Name of the stored dataset (default: file name).")
@click.option("--pack", "-p", "pack_name",
              help="Import every ratings file this pack declares, with its manifest's mapping.")
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
def import_cmd(file: Path | None, rubric_id: str | None, mapping: tuple[str, ...],
               items_mapping: tuple[str, ...], dataset_name: str | None, pack_name: str | None,
               as_json: bool) -> None:
    """Import human ratings from FILE (CSV, TSV, JSONL or JSON; long or wide form).

    Values are checked against the rubric's scale; the items carried in the file are
    stored too. Importing the same file again adds nothing.
    """
    from judge.calibration.importer import import_pack_ratings, import_ratings
    from judge.packs import find_rubric, get_pack
    from judge.store import Store

    if (file is None) == (pack_name is None):
        raise JudgeError("Give either FILE with --rubric ID, or --pack NAME (imports every "
                         "ratings file the pack declares).")
    store = Store.open()
    if pack_name is not None:
        results = import_pack_ratings(store, get_pack(pack_name))
    else:
        if not rubric_id:
            raise JudgeError("--rubric is required with FILE: the rubric whose scale the "
                             "ratings use, e.g. --rubric healthcare/claim-entailment.")
        rubric = find_rubric(rubric_id)
        results = [import_ratings(store, file, rubric, list(mapping) or None,  # type: ignore[arg-type]
                                  items_mapping=list(items_mapping) or None,
                                  dataset_name=dataset_name)]
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    for r in results:
        console.print(
            f"{r.source}: {r.new_ratings} new of {r.ratings} ratings ({r.form} form, "
            f"{r.raters} rater{'' if r.raters == 1 else 's'}) on {r.rubric_id}; "
            f"{r.new_items} new of {r.items} items in "
            f"dataset '{r.dataset_name}'", highlight=False, soft_wrap=True)


@ratings.command("export")
@click.option("--rubric", "-r", "rubric_id", help="Only ratings of this rubric.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (.csv or .jsonl); default CSV on stdout.")
def export_cmd(rubric_id: str | None, out: Path | None) -> None:
    """Export stored ratings in long form (one row per rating)."""
    import sys

    from judge.calibration.importer import export_ratings, format_rows
    from judge.store import Store

    rows = export_ratings(Store.open(), rubric_id)
    fmt = "jsonl" if out is not None and out.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    text = format_rows(rows, fmt)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"{len(rows)} ratings written to {out}", highlight=False)


@ratings.command("stats")
@click.option("--rubric", "-r", "rubric_id", help="Only this rubric (default: every rated one).")
@click.option("--dataset", help="Only this dataset (name or id).")
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=int,
              help="Bootstrap resamples for the intervals.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats_cmd(rubric_id: str | None, dataset: str | None, n_boot: int, seed: int,
              as_json: bool) -> None:
    """Items, ratings per item, raters and human–human agreement, per rubric and dataset.

    \b
    --json prints a list of {"rubric_id", "dataset", "items", "ratings", "raters",
      "ratings_per_item": {"mean", "min", "max"}, "items_with_2plus",
      "agreement": {STAT: {"value", "low", "high", "n"}} | null}
    """
    from judge.calibration.agreement import ScaleSpec
    from judge.calibration.human import load_human, ratings_stats
    from judge.packs import find_rubric
    from judge.store import Store

    store = Store.open()
    ids = [rubric_id] if rubric_id else sorted({r.rubric_id for r in store.ratings()})
    if not ids:
        raise JudgeError("No human ratings stored. Import some with `judge ratings import FILE "
                         "--rubric ID`.")
    out = []
    for rid in ids:
        rubric = find_rubric(rid)
        scale = ScaleSpec.from_rubric(rubric)
        for h in load_human(store, rubric, dataset):
            out.append(ratings_stats(h, scale, n_boot=n_boot, seed=seed))
    if as_json:
        emit_json(out)
        return
    for s in out:
        _print_stats(s)


def _fmt(e: dict[str, Any]) -> str:
    if e["value"] is None:
        return "n/a"
    lo = "n/a" if e["low"] is None else f"{e['low']:.3f}"
    hi = "n/a" if e["high"] is None else f"{e['high']:.3f}"
    return f"{e['value']:.3f} [{lo}, {hi}]"


def _print_stats(s: dict[str, Any]) -> None:
    rpi = s["ratings_per_item"]
    console.print(f"{s['rubric_id']} — dataset '{s['dataset']}'", style="bold", highlight=False)
    console.print(f"  items {s['items']}, ratings {s['ratings']}, raters {s['raters']}, ratings "
                  f"per item {rpi['mean']:.2f} (min {rpi['min']}, max {rpi['max']})",
                  highlight=False, soft_wrap=True)
    if s["agreement"] is None:
        console.print("  human–human agreement: n/a (no item rated by two or more people)")
        return
    names = {"fleiss_kappa": "Fleiss' kappa",
             "krippendorff_alpha_nominal": "Krippendorff's alpha (nominal)",
             "krippendorff_alpha_ordinal": "Krippendorff's alpha (ordinal)",
             "krippendorff_alpha_interval": "Krippendorff's alpha (interval)",
             "pairwise_cohen_kappa_mean": "mean pairwise Cohen's kappa"}
    for k, e in s["agreement"].items():
        console.print(f"  {names.get(k, k)}: {_fmt(e)} (n={e['n']} items)", highlight=False)


@click.group()
def judgments() -> None:
    """Judgments produced elsewhere, stored so they calibrate like the engine's."""


@judgments.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--judge-model", "-m", required=True, help="Name of the model that judged.")
@click.option("--rubric", "-r", "rubric_id", required=True, help="Rubric the verdicts are on.")
@click.option("--map", "mapping", multiple=True,
              help="item=COL and score=COL (likert), label=COL (categorical, pairwise) or "
                   "passed=COL (binary); records=PATH for a JSON document.")
@click.option("--json", "as_json", is_flag=True)
def judgments_import(file: Path, judge_model: str, rubric_id: str, mapping: tuple[str, ...],
                     as_json: bool) -> None:
    """Store the verdicts in FILE (one row per item) as judgments of JUDGE_MODEL."""
    from judge.calibration.importer import import_judgments
    from judge.packs import find_rubric
    from judge.store import Store

    res = import_judgments(Store.open(), file, find_rubric(rubric_id), judge_model,
                           list(mapping) or None)
    if as_json:
        emit_json(res.to_dict())
        return
    console.print(f"{res.source}: {res.new_judgments} new of {res.judgments} judgments by "
                  f"{res.judge_model} on {res.rubric_id} (job {res.job_id})", highlight=False,
                  soft_wrap=True)
