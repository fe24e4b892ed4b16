"""Datasets: JSONL or CSV files read into :class:`Item` objects through a column mapping."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from judge.errors import DatasetError

ITEM_FIELDS = ("id", "input", "output", "output_b", "reference", "context", "metadata")


class Item(BaseModel):
    """One thing to judge: the input the model under test saw and the output it gave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    input: str = ""
    output: str = ""
    output_b: str | None = None
    reference: str | None = None
    context: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def field(self, name: str) -> str | None:
        """The value of an item field by name (``input``, ``output``, …)."""
        return getattr(self, name)

    def content_key(self) -> str:
        """sha256 of the judged fields (not the id): the item's part of a cache key."""
        payload = json.dumps(
            [self.input, self.output, self.output_b, self.reference, self.context],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def split_pairs(
    spec: str | Iterable[str] | Mapping[str, str] | None, what: str, example: str,
    form: str = "KEY=COLUMN",
) -> list[tuple[str, str]]:
    """Split ``a=b,c=d`` (a string, several strings, or a mapping) into (key, value) pairs."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return [(str(k), str(v)) for k, v in spec.items()]
    pairs = []
    for part in [spec] if isinstance(spec, str) else list(spec):
        for piece in part.split(","):
            piece = piece.strip()
            if not piece:
                continue
            if "=" not in piece:
                raise DatasetError(f"Bad {what} '{piece}': expected {form}, e.g. {example}.")
            key, value = (s.strip() for s in piece.split("=", 1))
            pairs.append((key, value))
    return pairs


def parse_mapping(spec: str | Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``input=question,output=answer`` (item field = source column) into a dict."""
    mapping: dict[str, str] = {}
    for key, value in split_pairs(spec, "column mapping", "input=question", "FIELD=COLUMN"):
        if key not in ITEM_FIELDS:
            raise DatasetError(
                f"Unknown item field '{key}' in the column mapping. "
                f"Item fields: {', '.join(ITEM_FIELDS)}."
            )
        mapping[key] = value
    return mapping


def dataset_hash(path: str | Path) -> str:
    """sha256 of a dataset file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL, CSV or TSV file, with the line of any bad JSON."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(
                        f"{path}: line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})."
                    ) from exc
                if not isinstance(row, dict):
                    raise DatasetError(
                        f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}."
                    )
                yield lineno, row
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            for lineno, row in enumerate(reader, 2):
                yield lineno, dict(row)
    else:
        raise DatasetError(
            f"Unsupported dataset format '{path.suffix}' for {path}. Use .jsonl, .csv or .tsv."
        )


def read_items(
    path: str | Path, mapping: str | Iterable[str] | Mapping[str, str] | None = None
) -> list[Item]:
    """Read a JSONL/CSV dataset into items.

    ``mapping`` maps item fields to source columns (``input=question``); unmapped fields
    are taken from a column of the same name. Items without an ``id`` column get their
    line number. Columns not mapped to a field go into ``metadata``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Dataset not found: {path}")
    cols = parse_mapping(mapping)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, row in read_rows(path):
        items.append(_row_to_item(path, lineno, row, cols, seen))
    if not items:
        raise DatasetError(f"{path}: the dataset has no items.")
    return items


def _row_to_item(
    path: Path, lineno: int, row: dict[str, Any], cols: dict[str, str], seen: dict[str, int]
) -> Item:
    def column(field: str) -> Any:
        name = cols.get(field, field)
        if name in row:
            return row[name]
        if field in cols or field == "output":
            found = ", ".join(sorted(map(str, row))) or "(none)"
            raise DatasetError(
                f"{path}: line {lineno}: missing column '{name}' for item field '{field}'. "
                f"Columns found: {found}."
            )
        return None

    used = {cols.get(f, f) for f in ITEM_FIELDS}
    raw_id = column("id")
    item_id = str(raw_id) if raw_id not in (None, "") else str(lineno)
    if item_id in seen:
        raise DatasetError(
            f"{path}: line {lineno}: duplicate item id '{item_id}' (first seen on line "
            f"{seen[item_id]}). Item ids must be unique."
        )
    seen[item_id] = lineno
    metadata = column("metadata")
    if isinstance(metadata, str) and metadata.strip():
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {lineno}: metadata is not JSON: {exc.msg}.") from exc
    metadata = dict(metadata or {})
    metadata.update({k: v for k, v in row.items() if k not in used and v not in (None, "")})

    def text(field: str) -> str | None:
        value = column(field)
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return Item(
        id=item_id,
        input=text("input") or "",
        output=text("output") or "",
        output_b=text("output_b"),
        reference=text("reference"),
        context=text("context"),
        metadata=metadata,
    )
