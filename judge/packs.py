"""Domain packs: the ``pack.yaml`` manifest model.

(The registry, discovery and install live below the model; see the module's later parts.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PACK_SCHEMA_PATH = Path(__file__).parent / "schemas" / "pack.schema.json"
_NAME_RE = r"^[a-z0-9][a-z0-9_-]*$"
_SEMVER_RE = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RubricRef(_Strict):
    """A rubric the pack provides: one of its own files, or a core rubric it reuses by id."""

    file: str | None = Field(default=None, description="Path inside the pack, e.g. rubrics/x.yaml.")
    core: str | None = Field(default=None, description="Id of a core rubric reused, e.g. safety.")

    @model_validator(mode="after")
    def _one_of(self) -> RubricRef:
        if (self.file is None) == (self.core is None):
            raise ValueError("a rubric entry names exactly one of 'file' or 'core'")
        return self


class DataFile(_Strict):
    """A data file shipped in the pack: items to judge, or human ratings for calibration."""

    file: str = Field(description="Path inside the pack, e.g. data/items.jsonl.")
    kind: Literal["items", "ratings"]
    description: str
    rubric: str | None = Field(default=None, description="For ratings: the rubric id rated.")
    format: Literal["long", "wide"] | None = Field(
        default=None, description="For ratings: one row per rating (long) or per item (wide)."
    )
    mapping: dict[str, str] = Field(
        default_factory=dict, description="Column mapping, item or rating field = column."
    )
    source: str = Field(description="Where the data comes from and who made it.")
    license: str | None = None
    provenance: Literal["public-human", "author-reference", "synthetic"] = Field(
        description="public-human: real ratings by people, published; author-reference: "
        "written by the pack authors, not an expert panel; synthetic: made up for testing."
    )

    @model_validator(mode="after")
    def _ratings_name_rubric(self) -> DataFile:
        if self.kind == "ratings" and (self.rubric is None or self.format is None):
            raise ValueError("a ratings file needs 'rubric' and 'format'")
        return self


class PackManifest(_Strict):
    """The ``pack.yaml`` of a domain pack."""

    name: str = Field(pattern=_NAME_RE)
    version: str = Field(pattern=_SEMVER_RE)
    title: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    description: str = Field(min_length=1)
    rubrics: list[RubricRef] = Field(min_length=1)
    data: list[DataFile] = Field(default_factory=list)
    requires: str = Field(
        default=">=0.1", description="PEP 440 range of judge versions the pack works with."
    )
    sources: list[str] = Field(
        default_factory=list, description="Standards and references the rubrics derive from."
    )
    license: str | None = None

    @field_validator("requires")
    @classmethod
    def _specifier(cls, v: str) -> str:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(v)
        except InvalidSpecifier as exc:
            raise ValueError(f"not a PEP 440 version range: {v!r}") from exc
        return v


def generate_pack_schema() -> dict[str, Any]:
    """The pack manifest JSON Schema, generated from the pydantic model."""
    schema = PackManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://judge.dev/schemas/pack.schema.json"
    return schema
