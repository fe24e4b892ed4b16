"""Human ratings and external judgments into the store, and back out.

- :func:`import_ratings` reads a ratings file (long or wide form, CSV/TSV/JSONL/JSON, see
  :mod:`judge.calibration.ratings_io`), checks every value against the rubric's scale,
  stores the items the file carries as a dataset and the ratings against it. The dataset
  is identified by the file's bytes, and a rating by (dataset, item, rubric, rater), so
  importing the same file again adds nothing.
- :func:`import_pack_ratings` imports every ratings file a pack declares, with the
  manifest's mapping.
- :func:`import_judgments` stores verdicts produced elsewhere as ``ok`` judgments of a
  synthetic job (idempotency key ``import:<file sha256>:…``), so they calibrate exactly
  like the engine's.
- :func:`export_ratings` writes stored ratings in long form.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge.calibration.agreement import ScaleSpec
from judge.calibration.ratings_io import _get, _is_missing, _records, read_ratings
from judge.datasets import ITEM_FIELDS, Item, dataset_hash, parse_mapping
from judge.errors import CalibrationError, DatasetError
from judge.judgments import Judgment, Status

if TYPE_CHECKING:
    from judge.packs import Pack
    from judge.rubrics import Rubric
    from judge.store import Store

IMPORT_PREFIX = "import:"
"""Prompt hashes and job idempotency keys of imported judgments start with this."""


@dataclass
class ImportResult:
    """What one ratings import did."""

    source: str
    rubric_id: str
    dataset_id: str
    dataset_name: str
    form: str
    ratings: int
    new_ratings: int
    items: int
    new_items: int
    raters: int
    items_mapping: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rating_fields(scale: ScaleSpec, value: Any, where: str) -> tuple[float | None, str | None]:
    """Validate one rating against the scale: ``(score, label)`` to store.

    Likert ratings keep their score; label scales store the canonical label (and its
    score when the labels have scores); binary stores ``pass``/``fail`` and 1/0.

    Raises:
        CalibrationError: naming where the value was found, the value and the options.
    """
    try:
        code = float(scale.encode([value])[0])
    except CalibrationError as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    if math.isnan(code):
        return None, None
    if scale.kind == "likert":
        return code, None
    label = scale.level_names[int(code)]
    score = float(scale.to_value([code])[0]) if scale.kind == "binary" or scale.scores else None
    return score, label


def rating_code(scale: ScaleSpec, score: float | None, label: str | None) -> float:
    """The scale code of a stored rating (NaN when it has neither score nor label)."""
    value: Any = score if scale.kind == "likert" else label
    if value is None:
        value = score
    return float(scale.encode([value])[0])


def _items_from(table: Any, mapping: Mapping[str, str]) -> list[Item]:
    """Items from the non-rating fields of a ratings file (``field=column``, dotted)."""
    cols = {f: mapping.get(f, f) for f in ITEM_FIELDS if f != "id"}
    used = set(cols.values()) | {c.split(".")[0] for c in cols.values()}
    items = []
    for row in table.to_dict(orient="records"):
        row = {k: v for k, v in row.items() if not _is_missing(v) if not _is_nan_like(v)}

        def text(name: str, row: dict[str, Any] = row) -> str | None:
            v = _get(row, cols[name])
            if _is_missing(v):
                return None
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)

        meta = _get(row, cols["metadata"])
        metadata = dict(meta) if isinstance(meta, Mapping) else {}
        metadata.update({k: v for k, v in row.items() if k not in used and k != "item_id"})
        items.append(Item(
            id=str(row["item_id"]), input=text("input") or "", output=text("output") or "",
            output_b=text("output_b"), reference=text("reference"), context=text("context"),
            metadata=json.loads(json.dumps(metadata, default=str)),
        ))
    return items


def _is_nan_like(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _pack_items_mapping(rubric: Rubric, path: Path) -> dict[str, str]:
    """The items mapping the rubric's pack declares for a file of this name, if any."""
    if rubric.pack is None:
        return {}
    try:
        from judge.packs import get_pack

        pack = get_pack(rubric.pack)
    except Exception:  # noqa: BLE001 - no pack, no declared mapping: fall back to columns
        return {}
    for df in pack.data:
        if df.kind == "items" and Path(df.file).name == path.name:
            return dict(df.mapping)
    return {}


def import_ratings(store: Store, path: str | Path, rubric: Rubric,
                   mapping: str | Sequence[str] | Mapping[str, str] | None = None, *,
                   items_mapping: str | Sequence[str] | Mapping[str, str] | None = None,
                   dataset_name: str | None = None, expected_form: str | None = None
                   ) -> ImportResult:
    """Import a ratings file for ``rubric``; see the module docstring.

    Args:
        store: where the dataset and ratings go.
        path: the ratings file.
        rubric: the rubric rated; its scale validates every value.
        mapping: the ratings mapping (``item=…,rater=…,score=…`` or ``raters=…``).
        items_mapping: item field = column for the items in the file (dotted paths
            allowed); default: the mapping the rubric's pack declares for a file of this
            name, else columns named like the item fields.
        dataset_name: name of the stored dataset (default: the file name).
        expected_form: ``long`` or ``wide`` when the caller knows (a pack manifest).

    Raises:
        CalibrationError: an unknown label or out-of-scale score (nothing is stored).
        DatasetError: an unreadable file or a bad mapping.
    """
    path = Path(path)
    rf = read_ratings(path, mapping)
    if expected_form is not None and rf.form != expected_form:
        raise DatasetError(f"{path}: declared as {expected_form} form, but the mapping reads it "
                           f"as {rf.form} form.")
    scale = ScaleSpec.from_rubric(rubric)
    rows = []
    for item_id, rater, value in rf.ratings.itertuples(index=False):
        score, label = rating_fields(scale, value, f"{path}: item {item_id}, rater {rater}")
        if score is None and label is None:
            continue
        rows.append((str(item_id), str(rater), score, label))
    imap = parse_mapping(items_mapping) if items_mapping else _pack_items_mapping(rubric, path)
    items = _items_from(rf.items, imap)
    file_hash = dataset_hash(path)
    name = dataset_name or path.name
    existing = store.find_dataset(_content_hash(file_hash))
    dataset_id = store.put_dataset(name, items, _content_hash(file_hash))
    new_items = 0 if existing is not None else len(items)
    if existing is not None:  # items added to the file since: stored, the rest skipped
        new_items = store.put_items(dataset_id, items)
    from judge.store import Rating

    new = store.put_ratings(
        Rating(dataset_id=dataset_id, item_id=i, rubric_id=rubric.id,
               rubric_version=rubric.version, rater_id=r, score=s, label=lab,
               source_hash=file_hash)
        for i, r, s, lab in rows)
    return ImportResult(str(path), rubric.id, dataset_id, name, rf.form, len(rows), new,
                        len(items), new_items, len({r for _, r, _, _ in rows}), imap)


def _content_hash(file_hash: str) -> str:
    # A ratings file is its own dataset, apart from the same bytes read as plain items
    # by `judge run` (which may map its columns differently).
    return f"ratings:{file_hash}"


def import_pack_ratings(store: Store, pack: Pack) -> list[ImportResult]:
    """Import every ratings file ``pack`` declares, with its manifest's mapping."""
    from judge.packs import find_rubric

    out = []
    declared = [df for df in pack.data if df.kind == "ratings"]
    if not declared:
        raise CalibrationError(f"Pack '{pack.name}' declares no ratings files (data entries "
                               f"of kind 'ratings' in its pack.yaml).")
    for df in declared:
        assert df.rubric is not None
        rubric = find_rubric(df.rubric)
        path = pack.data_path(df)
        items_map = next((dict(d.mapping) for d in pack.data
                          if d.kind == "items" and d.file == df.file), None)
        out.append(import_ratings(store, path, rubric, dict(df.mapping),
                                  items_mapping=items_map or None,
                                  dataset_name=f"{pack.name}:{df.file}",
                                  expected_form=df.format))
    return out


# --- external judgments ------------------------------------------------------------------

_JUDGMENT_KEYS = ("item", "score", "label", "passed", "rationale", "records")


def _judgments_mapping(spec: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if spec is None:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(spec, Mapping):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        for part in [spec] if isinstance(spec, str) else spec:
            for piece in part.split(","):
                if not piece.strip():
                    continue
                if "=" not in piece:
                    raise DatasetError(f"Bad judgments mapping '{piece}': expected KEY=COLUMN, "
                                       f"e.g. score=verdict.")
                k, v = (s.strip() for s in piece.split("=", 1))
                pairs.append((k, v))
    out = {}
    for k, v in pairs:
        if k not in _JUDGMENT_KEYS:
            raise DatasetError(f"Unknown key '{k}' in the judgments mapping. Keys: "
                               f"{', '.join(_JUDGMENT_KEYS)}.")
        out[k] = v
    return out


@dataclass
class JudgmentsImport:
    """What one judgments import did."""

    source: str
    rubric_id: str
    judge_model: str
    job_id: str
    judgments: int
    new_judgments: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def import_judgments(store: Store, path: str | Path, rubric: Rubric, judge_model: str,
                     mapping: str | Sequence[str] | Mapping[str, str] | None = None
                     ) -> JudgmentsImport:
    """Store verdicts produced elsewhere as ``ok`` judgments of ``judge_model``.

    One row per item: ``item=`` names the id column (default ``item_id`` or ``id``, else
    the row number as for ratings), and the verdict is ``score=`` (likert), ``label=``
    (categorical, pairwise ``a``/``b``/``tie``) or ``passed=`` (binary; ``label=``
    works too). Values are checked against the rubric's scale. The judgments belong to
    a job made once per (file, rubric, judge model), so re-importing adds nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Judgments file not found: {path}")
    cols = _judgments_mapping(mapping)
    rows = _records(path, cols.get("records"))
    if not rows:
        raise DatasetError(f"{path}: the judgments file has no rows.")
    columns = list(rows[0][1])
    item_col = cols.get("item") or next((c for c in ("item_id", "id") if c in columns), None)
    verdict_col = (cols.get("score") or cols.get("label") or cols.get("passed")
                   or next((c for c in ("score", "label", "passed", "verdict") if c in columns),
                           None))
    if verdict_col is None:
        raise DatasetError(f"{path}: no verdict column. Name it with score=COLUMN, "
                           f"label=COLUMN or passed=COLUMN. Columns found: {', '.join(columns)}.")
    scale = ScaleSpec.from_rubric(rubric)
    file_hash = dataset_hash(path)
    key = f"{IMPORT_PREFIX}{file_hash}:{rubric.content_hash[:16]}:{judge_model}"
    job, _ = store.create_job({"kind": "import-judgments", "file": str(path),
                               "file_hash": file_hash, "rubric": rubric.id,
                               "rubric_hash": rubric.content_hash, "judge_model": judge_model},
                              idempotency_key=key[:255])
    judgments = []
    for lineno, row in rows:
        raw_id = _get(row, item_col) if item_col else None
        item_id = str(lineno) if _is_missing(raw_id) else str(raw_id)
        value = _get(row, verdict_col)
        if _is_missing(value):
            continue
        score, label = rating_fields(scale, value, f"{path}: row {lineno}")
        fields: dict[str, Any] = {"score": score, "label": label}
        if scale.kind == "binary":
            fields["passed"] = label == "pass"
            fields["label"] = None
        elif scale.kind == "labels" and scale.scores is None:  # pairwise
            fields["score"] = None
        else:
            fields["passed"] = rubric.passes(score=score)
        rationale = _get(row, cols["rationale"]) if "rationale" in cols else None
        judgments.append(Judgment(
            job_id=job.id, item_id=item_id, rubric_id=rubric.id,
            rubric_version=rubric.version, rubric_hash=rubric.content_hash,
            judge_model=judge_model, prompt_hash=f"{IMPORT_PREFIX}{file_hash[:32]}",
            status=Status.OK, order="ab" if rubric.pairwise else None,
            rationale=None if _is_missing(rationale) else str(rationale), **fields))
    new = store.write_judgments(judgments)
    store.set_job_status(job.id, "succeeded")
    return JudgmentsImport(str(path), rubric.id, judge_model, job.id, len(judgments), new)


# --- export ----------------------------------------------------------------------------

EXPORT_COLUMNS = ("dataset", "item_id", "rubric_id", "rubric_version", "rater_id", "score",
                  "label", "comment", "rated_at", "source_hash")


def export_ratings(store: Store, rubric_id: str | None = None) -> list[dict[str, Any]]:
    """Stored ratings as long-form rows (``EXPORT_COLUMNS``)."""
    names: dict[str, str] = {}
    out = []
    for r in store.ratings(rubric_id=rubric_id):
        if r.dataset_id not in names:
            names[r.dataset_id] = store.get_dataset(r.dataset_id).name
        out.append({"dataset": names[r.dataset_id], "item_id": r.item_id,
                    "rubric_id": r.rubric_id, "rubric_version": r.rubric_version,
                    "rater_id": r.rater_id, "score": r.score, "label": r.label,
                    "comment": r.comment,
                    "rated_at": r.rated_at.isoformat() if r.rated_at else None,
                    "source_hash": r.source_hash})
    return out


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as CSV or JSONL text."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
