"""Rubrics as validated data: the pydantic model, its shipped JSON Schema, loading with
every fault reported (file, JSON path, rule, value), and a stable content hash."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from judge.errors import RubricError, ValidationIssue

SCHEMA_PATH = Path(__file__).parent / "schemas" / "rubric.schema.json"

ItemField = Literal["input", "output", "reference", "context", "output_b"]
_ID_RE = r"^([a-z0-9][a-z0-9_-]*/)?[a-z0-9][a-z0-9_-]*$"
_SEMVER_RE = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LikertScale(_Strict):
    """Integer scores ``min..max``, each level with an anchored description."""

    type: Literal["likert"]
    min: int = Field(description="Lowest score (worst).")
    max: int = Field(description="Highest score (best).")
    anchors: dict[int, str] = Field(
        description="A description of what earns each score, for every level min..max."
    )

    @model_validator(mode="after")
    def _every_level_anchored(self) -> LikertScale:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be less than max ({self.max})")
        if self.max - self.min > 10:
            raise ValueError(f"a likert scale has at most 11 levels, got {self.min}..{self.max}")
        levels = set(range(self.min, self.max + 1))
        missing = sorted(levels - set(self.anchors))
        extra = sorted(set(self.anchors) - levels)
        if missing:
            raise ValueError(f"every level needs an anchor; missing anchors for {missing}")
        if extra:
            raise ValueError(f"anchors outside {self.min}..{self.max}: {extra}")
        for level, text in self.anchors.items():
            if not text.strip():
                raise ValueError(f"anchor for level {level} is empty")
        return self

    @property
    def levels(self) -> list[int]:
        return list(range(self.min, self.max + 1))


class BinaryScale(_Strict):
    """Pass or fail."""

    type: Literal["binary"]
    pass_description: str = Field(description="What an output that passes looks like.")
    fail_description: str = Field(description="What an output that fails looks like.")


class CategoryLabel(_Strict):
    """One label of a categorical scale, with its numeric score."""

    label: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_ .-]*$")
    score: float
    description: str


class CategoricalScale(_Strict):
    """Named labels, each mapped to a score."""

    type: Literal["categorical"]
    labels: list[CategoryLabel] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique_labels(self) -> CategoricalScale:
        names = [lab.label for lab in self.labels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"labels must be unique; repeated: {dupes}")
        return self

    def score_of(self, label: str) -> float:
        for lab in self.labels:
            if lab.label == label:
                return lab.score
        raise KeyError(label)


class PairwiseScale(_Strict):
    """Which of two outputs (``output`` = A, ``output_b`` = B) is better."""

    type: Literal["pairwise"]
    allow_tie: bool = True


Scale = Annotated[
    LikertScale | BinaryScale | CategoricalScale | PairwiseScale, Field(discriminator="type")
]


class Example(_Strict):
    """A few-shot example: item fields, the expected verdict and why."""

    input: str | None = None
    output: str | None = None
    output_b: str | None = None
    reference: str | None = None
    context: str | None = None
    score: float | None = None
    label: str | None = None
    passed: bool | None = None
    rationale: str


class _Check(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str
    field: ItemField = "output"
    score_on_fail: float | None = Field(
        default=None,
        description="Score recorded when the check settles the judgment; null records none.",
    )


class RegexCheck(_Check):
    """Fails when the pattern is found (``must: not_match``) or not found (``must: match``)."""

    type: Literal["regex"]
    pattern: str
    must: Literal["match", "not_match"] = "not_match"
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return v


class KeywordCheck(_Check):
    """Fails when a forbidden keyword appears, or when none of the required ones does."""

    type: Literal["keywords"]
    keywords: list[str] = Field(min_length=1)
    must: Literal["include_any", "include_all", "exclude"] = "exclude"
    ignore_case: bool = True


class LengthCheck(_Check):
    """Fails when the field is shorter or longer than the bounds (characters or words)."""

    type: Literal["length"]
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=0)


class JsonSchemaCheck(_Check):
    """Fails when the field is not JSON valid against the schema."""

    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(v)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return v


Check = Annotated[
    RegexCheck | KeywordCheck | LengthCheck | JsonSchemaCheck, Field(discriminator="type")
]


class Rubric(_Strict):
    """A rubric: what a judge grades, on which scale, with which instructions."""

    id: str = Field(pattern=_ID_RE, description="`pack/name`, or a bare name for a core rubric.")
    version: str = Field(pattern=_SEMVER_RE, description="Semantic version.")
    dimension: str = Field(min_length=1, description="What is measured, e.g. safety.")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    inputs: list[ItemField] = Field(min_length=1, description="Item fields the judge sees.")
    scale: Scale
    pass_threshold: float | None = Field(
        default=None,
        description="Score at or above which an output passes (likert, categorical).",
    )
    instructions: str = Field(min_length=1, description="What the judge is told to do.")
    examples: list[Example] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    allow_abstain: bool = Field(
        default=False, description="Whether the judge may answer 'cannot assess'."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        scale = self.scale
        if "output" not in self.inputs:
            raise ValueError("inputs must include 'output': a rubric grades an output")
        if isinstance(scale, PairwiseScale) != ("output_b" in self.inputs):
            raise ValueError("a pairwise scale needs 'output_b' in inputs, and only it may")
        if isinstance(scale, LikertScale | CategoricalScale):
            if self.pass_threshold is None:
                raise ValueError(f"a {scale.type} scale needs a pass_threshold")
            lo, hi = _score_range(scale)
            if not lo <= self.pass_threshold <= hi:
                raise ValueError(
                    f"pass_threshold {self.pass_threshold} is outside the scale's range {lo}..{hi}"
                )
        elif self.pass_threshold is not None:
            raise ValueError(f"a {scale.type} scale takes no pass_threshold")
        for i, ex in enumerate(self.examples):
            _check_example(self, i, ex)
        ids = [c.id for c in self.checks]
        dupes = sorted({c for c in ids if ids.count(c) > 1})
        if dupes:
            raise ValueError(f"check ids must be unique; repeated: {dupes}")
        return self

    @property
    def pack(self) -> str | None:
        """The pack part of the id, or None for a core rubric."""
        return self.id.split("/", 1)[0] if "/" in self.id else None

    @property
    def pairwise(self) -> bool:
        return isinstance(self.scale, PairwiseScale)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False
                   ) -> Rubric:
        """A copy; its content hash is recomputed, never carried over from the original."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("content_hash", None)
        return copy

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the rubric's canonical JSON: any change of content changes it."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def passes(self, score: float | None = None, passed: bool | None = None) -> bool | None:
        """Whether a verdict passes this rubric."""
        if isinstance(self.scale, BinaryScale):
            return passed
        if score is None or self.pass_threshold is None:
            return None
        return score >= self.pass_threshold


def _score_range(scale: LikertScale | CategoricalScale) -> tuple[float, float]:
    if isinstance(scale, LikertScale):
        return scale.min, scale.max
    scores = [lab.score for lab in scale.labels]
    return min(scores), max(scores)


def _check_example(rubric: Rubric, i: int, ex: Example) -> None:
    scale = rubric.scale
    where = f"examples[{i}]"
    if isinstance(scale, LikertScale):
        if ex.score is None or not scale.min <= ex.score <= scale.max or ex.score != int(ex.score):
            raise ValueError(f"{where}.score must be an integer in {scale.min}..{scale.max}")
    elif isinstance(scale, BinaryScale):
        if ex.passed is None:
            raise ValueError(f"{where} needs 'passed' for a binary scale")
    elif isinstance(scale, CategoricalScale):
        names = [lab.label for lab in scale.labels]
        if ex.label not in names:
            raise ValueError(f"{where}.label {ex.label!r} is not one of {names}")
    elif isinstance(scale, PairwiseScale):
        allowed = ["a", "b", "tie"] if scale.allow_tie else ["a", "b"]
        if ex.label not in allowed:
            raise ValueError(f"{where}.label must be one of {allowed} for a pairwise scale")
    missing = [f for f in rubric.inputs if getattr(ex, f) is None]
    if missing:
        raise ValueError(f"{where} lacks the rubric's inputs {missing}")


# --- JSON Schema -----------------------------------------------------------------------


def generate_schema() -> dict[str, Any]:
    """The rubric JSON Schema, generated from the pydantic model."""
    schema = Rubric.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://judge.dev/schemas/rubric.schema.json"
    return schema


def schema_text(schema: dict[str, Any]) -> str:
    """How a generated schema is written to disk (stable, so a diff means a change)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def shipped_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package."""
    return json.loads(SCHEMA_PATH.read_text())


# --- Loading ---------------------------------------------------------------------------


def _json_path(parts: Any) -> str:
    path = "$"
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return path


def validate_data(
    data: Any, schema: dict[str, Any], model: type[BaseModel], source: str
) -> tuple[BaseModel | None, list[ValidationIssue]]:
    """Validate parsed data against a JSON Schema and then its pydantic model.

    Returns the model (or None) and every issue found, each with file, JSON path, rule
    and value. Semantic rules the schema cannot state (an anchor for every level, min <
    max) come from the model's validators and are reported in the same form.
    """
    # JSON round trip: YAML int keys (likert anchors) become strings as in any JSON document.
    try:
        data = json.loads(json.dumps(data))
    except (TypeError, ValueError) as exc:
        return None, [ValidationIssue(source, "$", "json", f"not JSON-compatible: {exc}", None)]
    issues: list[ValidationIssue] = []
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        issues.extend(_schema_issues(err, source))
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        seen = {i.path for i in issues}
        for e in exc.errors():
            loc = [p for p in e["loc"] if p not in ("likert", "binary", "categorical", "pairwise",
                                                     "regex", "keywords", "length", "json_schema")]
            path = _json_path(loc)
            if e["type"] in ("extra_forbidden", "missing") and issues:
                continue  # already reported by the schema, with its rule name
            if path in seen and e["type"] != "value_error":
                continue
            rule = "semantic" if e["type"] == "value_error" else e["type"]
            msg = e["msg"].removeprefix("Value error, ")
            issues.append(ValidationIssue(source, path, rule, msg, e.get("input")))
        return None, issues
    if issues:
        return None, issues
    return obj, []


def _schema_issues(err: jsonschema.ValidationError, source: str) -> list[ValidationIssue]:
    # jsonschema types `schema` as a mapping, a boolean schema or unset; the oneOf and
    # additionalProperties keywords only ever come from a mapping.
    schema: Mapping[str, Any] = err.schema if isinstance(err.schema, Mapping) else {}
    instance = err.instance
    # A oneOf over the scale/check variants: report the variant the `type` selects.
    if err.validator == "oneOf" and err.context and isinstance(instance, dict):
        wanted = instance.get("type")
        picked = [
            sub for sub in err.context
            if sub.schema_path and wanted is not None
            and _variant_type(schema, sub.schema_path[0]) == wanted
        ]
        if picked:
            out: list[ValidationIssue] = []
            for sub in picked:
                out.extend(_schema_issues(sub, source))
            return out
        types = [_variant_type(schema, i) for i in range(len(schema.get("oneOf", [])))]
        return [ValidationIssue(source, err.json_path + ".type", "enum",
                                f"type must be one of {[t for t in types if t]}", wanted)]
    if err.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        if not isinstance(instance, dict):
            return []
        return [
            ValidationIssue(source, f"{err.json_path}.{key}", "additionalProperties",
                            f"unknown key '{key}'; allowed keys: {', '.join(allowed)}",
                            instance[key])
            for key in sorted(set(instance) - set(allowed))
        ]
    return [ValidationIssue(source, err.json_path, str(err.validator), err.message, err.instance)]


def _variant_type(schema: Mapping[str, Any], index: Any) -> str | None:
    try:
        variant = schema["oneOf"][index]
    except (KeyError, IndexError, TypeError):
        return None
    if "$ref" in variant:
        return None
    return variant.get("properties", {}).get("type", {}).get("const")


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely, with the file and line in any syntax error."""
    from judge.errors import DataValidationError

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "$"
        raise DataValidationError(
            "YAML", [ValidationIssue(str(path), where, "yaml", str(exc).splitlines()[0], None)]
        ) from exc
    except OSError as exc:
        raise DataValidationError(
            "file", [ValidationIssue(str(path), "$", "read", exc.strerror or str(exc), None)]
        ) from exc


def check_rubric_file(path: str | Path) -> tuple[Rubric | None, list[ValidationIssue]]:
    """Validate one rubric file; return the rubric (or None) and every issue."""
    from judge.errors import DataValidationError

    path = Path(path)
    try:
        data = load_yaml(path)
    except DataValidationError as exc:
        return None, exc.issues
    schema = _resolved_schema()
    obj, issues = validate_data(data, schema, Rubric, str(path))
    return (obj if isinstance(obj, Rubric) else None), issues


def load_rubric(path: str | Path) -> Rubric:
    """Load and validate one rubric file; raise :class:`RubricError` with every issue."""
    rubric, issues = check_rubric_file(path)
    if rubric is None:
        raise RubricError(f"rubric {path}", issues)
    return rubric


def parse_rubric(data: dict[str, Any], source: str = "<rubric>") -> Rubric:
    """Validate an in-memory rubric document."""
    obj, issues = validate_data(data, _resolved_schema(), Rubric, source)
    if not isinstance(obj, Rubric):
        raise RubricError(f"rubric {source}", issues)
    return obj


_SCHEMA_CACHE: dict[str, Any] = {}


def _resolved_schema() -> dict[str, Any]:
    if "rubric" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["rubric"] = shipped_schema()
    return _SCHEMA_CACHE["rubric"]


def core_rubrics_dir() -> Path:
    """The directory of the core rubrics shipped with judge."""
    import judge_rubrics

    return Path(judge_rubrics.__file__).parent


def load_core_rubrics() -> dict[str, Rubric]:
    """Every core rubric, by id."""
    out: dict[str, Rubric] = {}
    for path in sorted(core_rubrics_dir().glob("*.yaml")):
        rubric = load_rubric(path)
        out[rubric.id] = rubric
    return out
