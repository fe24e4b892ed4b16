"""Reading human ratings files into a tidy table of ``(item_id, rater_id, value)``.

Two forms, CSV/TSV, JSONL or a JSON document, chosen by the mapping
(``key=column`` pairs, comma-separated, as ``--map`` gives them):

- **long**, one row per rating: ``item=…, rater=…, value=…`` (``score=`` and
  ``label=`` are synonyms of ``value=``);
- **wide**, one row per item: ``raters=label_0|label_1|label_2`` or a glob
  ``raters=label_*`` (one column per rater; the column name is the rater id), or
  ``values=path.to.list`` (one list-valued field holding every rating; the raters are
  identified by position, ``#0``, ``#1``, …).

``item=`` names the item id column; without it, an ``item_id`` or ``id`` column is used,
else the row number (CSV: data row + 1, as a header counts as line 1; JSONL: the line;
JSON: index + 1) — the same ids :func:`judge.datasets.read_items` gives. Field names may
be dotted paths into nested JSON (``annotations.safety.individual_human_scores``).
``records=path`` names the list of rows inside a JSON document. Empty cells and nulls
are missing ratings and are left out. Every other field of a row is kept in ``items``.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from judge.calibration.agreement import ScaleSpec
from judge.datasets import read_rows, split_pairs
from judge.errors import DatasetError

MAPPING_KEYS = ("item", "rater", "value", "raters", "values", "records")
_SYNONYMS = {"score": "value", "label": "value", "item_id": "item", "rater_id": "rater"}
_MISSING = object()


@dataclass
class RatingsFile:
    """What a ratings file holds: the tidy ratings and the items' other fields."""

    ratings: pd.DataFrame  # columns item_id, rater_id, value
    items: pd.DataFrame  # column item_id, then every non-rating field
    form: str
    source: str


@dataclass
class RatingsMatrix:
    """Ratings as codes, items × raters, NaN where a rater did not rate an item."""

    item_ids: list[str]
    rater_ids: list[str]
    values: np.ndarray


def parse_ratings_mapping(spec: str | Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``item=id,rater=annotator,score=rating`` into a dict of mapping keys."""
    pairs = split_pairs(spec, "ratings mapping", "rater=annotator")
    out: dict[str, str] = {}
    for k, v in pairs:
        key = _SYNONYMS.get(k, k)
        if key not in MAPPING_KEYS:
            raise DatasetError(
                f"Unknown key '{k}' in the ratings mapping. Keys: "
                f"{', '.join(MAPPING_KEYS)} (score= and label= mean value=)."
            )
        out[key] = v
    if "raters" in out and "values" in out:
        raise DatasetError("A ratings mapping takes raters= (one column per rater) or values= "
                           "(one list of ratings), not both.")
    return out


def _get(row: Mapping[str, Any], path: str) -> Any:
    if path in row:
        return row[path]
    cur: Any = row
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _is_missing(v: Any) -> bool:
    return v is None or v is _MISSING or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def _records(path: Path, records: str | None) -> list[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
        return list(read_rows(path))
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}).") from exc
        rows = doc if records is None else _get(doc, records) if isinstance(doc, dict) else _MISSING
        if not isinstance(rows, list):
            lists = sorted(k for k, v in doc.items() if isinstance(v, list)) if isinstance(
                doc, dict) else []
            where = f"at records='{records}'" if records else "at the top level"
            raise DatasetError(
                f"{path}: expected a list of rows {where}. Name it with records=PATH; "
                f"list-valued keys found: {', '.join(lists) or '(none)'}."
            )
        return [(i, r) for i, r in enumerate(rows, 1) if isinstance(r, dict)]
    raise DatasetError(
        f"Unsupported ratings format '{path.suffix}' for {path}. Use .csv, .tsv, .jsonl or .json."
    )


def read_ratings(path: str | Path,
                 mapping: str | Iterable[str] | Mapping[str, str] | None = None) -> RatingsFile:
    """Read a ratings file (long or wide form; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Ratings file not found: {path}")
    cols = parse_ratings_mapping(mapping)
    rows = _records(path, cols.get("records"))
    if not rows:
        raise DatasetError(f"{path}: the ratings file has no rows.")
    columns = list(rows[0][1].keys())
    if "raters" in cols or "values" in cols:
        form = "wide"
    elif "rater" in cols or any(c in columns for c in ("rater_id", "rater")):
        form = "long"
    else:
        raise DatasetError(
            f"{path}: cannot tell the form of this ratings file. Give rater=COLUMN (long "
            f"form), raters=COL1|COL2 or raters=GLOB (one column per rater) or values=FIELD "
            f"(a list of ratings). Columns found: {', '.join(columns) or '(none)'}."
        )
    item_col = cols.get("item") or next((c for c in ("item_id", "id") if c in columns), None)
    used: set[str] = {item_col} if item_col else set()
    ratings: list[tuple[str, str, Any]] = []
    if form == "long":
        rater_col = cols.get("rater") or ("rater_id" if "rater_id" in columns else "rater")
        value_col = cols.get("value") or next(
            (c for c in ("value", "score", "label") if c in columns), "value")
        used |= {rater_col, value_col}
        for c in (rater_col, value_col):
            if _get(rows[0][1], c) is _MISSING:
                raise DatasetError(f"{path}: missing column '{c}'. Columns found: "
                                   f"{', '.join(columns)}.")
    else:
        rater_cols: list[str] = []
        if "raters" in cols:
            for pat in cols["raters"].split("|"):
                hits = fnmatch.filter(columns, pat) if any(ch in pat for ch in "*?[") else (
                    [pat] if pat in columns else [])
                if not hits:
                    raise DatasetError(
                        f"{path}: rater column '{pat}' matches no column. Columns found: "
                        f"{', '.join(columns)}."
                    )
                rater_cols += [h for h in hits if h not in rater_cols]
            used |= set(rater_cols)
        else:
            used.add(cols["values"].split(".")[0])
    seen: dict[tuple[str, str], int] = {}
    items: dict[str, dict[str, Any]] = {}
    for lineno, row in rows:
        raw_id = _get(row, item_col) if item_col else _MISSING
        if item_col and _is_missing(raw_id) and "item" in cols:
            raise DatasetError(f"{path}: row {lineno}: no item id in column '{item_col}'.")
        item_id = str(lineno) if _is_missing(raw_id) else str(raw_id)
        if item_id not in items:
            items[item_id] = {k: v for k, v in row.items() if k not in used}
        if form == "long":
            rater, value = _get(row, rater_col), _get(row, value_col)
            if _is_missing(value):
                continue
            if _is_missing(rater):
                raise DatasetError(f"{path}: row {lineno}: a rating without a rater "
                                   f"(column '{rater_col}').")
            key = (item_id, str(rater))
            if key in seen:
                raise DatasetError(
                    f"{path}: row {lineno}: rater '{rater}' rated item '{item_id}' again (first "
                    f"on row {seen[key]}). One rating per rater and item."
                )
            seen[key] = lineno
            ratings.append((item_id, str(rater), value))
        elif "raters" in cols:
            for c in rater_cols:
                v = _get(row, c)
                if not _is_missing(v):
                    ratings.append((item_id, c, v.strip() if isinstance(v, str) else v))
        else:
            vals = _get(row, cols["values"])
            if _is_missing(vals):
                continue
            if not isinstance(vals, list):
                raise DatasetError(f"{path}: row {lineno}: '{cols['values']}' is not a list of "
                                   f"ratings (got {type(vals).__name__}).")
            for i, v in enumerate(vals):
                if not _is_missing(v):
                    ratings.append((item_id, f"#{i}", v))
    if not ratings:
        raise DatasetError(f"{path}: no ratings found with mapping {cols or '(default)'}.")
    table = pd.DataFrame(ratings, columns=["item_id", "rater_id", "value"])
    item_table = pd.DataFrame([{"item_id": k, **v} for k, v in items.items()])
    return RatingsFile(table, item_table, form, str(path))


def ratings_matrix(ratings: pd.DataFrame, scale: ScaleSpec,
                   item_ids: Iterable[str] | None = None) -> RatingsMatrix:
    """Encode a tidy ratings table into an items × raters matrix of codes.

    ``item_ids`` fixes the row order (e.g. to align with judge verdicts); items without
    ratings get an all-NaN row. Unknown labels raise
    :class:`~judge.errors.CalibrationError` naming the label and the options.
    """
    codes = scale.encode(ratings["value"].tolist())
    items = list(dict.fromkeys(ratings["item_id"].astype(str))) if item_ids is None else [
        str(i) for i in item_ids]
    raters = list(dict.fromkeys(ratings["rater_id"].astype(str)))
    row = {k: i for i, k in enumerate(items)}
    col = {k: i for i, k in enumerate(raters)}
    m = np.full((len(items), len(raters)), np.nan)
    for it, ra, c in zip(ratings["item_id"].astype(str), ratings["rater_id"].astype(str), codes,
                         strict=True):
        if it in row:
            m[row[it], col[ra]] = c
    return RatingsMatrix(items, raters, m)
