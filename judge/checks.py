"""Deterministic rubric checks: declarative regex, keyword, length and JSON Schema tests
that settle a judgment without calling a judge. No code from data files is ever run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema

from judge.datasets import Item
from judge.rubrics import Check, JsonSchemaCheck, KeywordCheck, LengthCheck, RegexCheck, Rubric


@dataclass(frozen=True)
class Finding:
    """A check that failed on an item, with the text that made it fail."""

    check_id: str
    description: str
    field: str
    detail: str
    score_on_fail: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check_id, "field": self.field, "detail": self.detail,
                "description": self.description}


def run_check(check: Check, item: Item) -> Finding | None:
    """Run one check on an item; return a :class:`Finding` if it fails, else None."""
    text = item.field(check.field) or ""
    detail = _failure(check, text)
    if detail is None:
        return None
    return Finding(check.id, check.description, check.field, detail, check.score_on_fail)


def run_checks(rubric: Rubric, item: Item) -> list[Finding]:
    """Run every check of a rubric on an item, in order; return the failures."""
    return [f for c in rubric.checks if (f := run_check(c, item)) is not None]


def _failure(check: Check, text: str) -> str | None:
    if isinstance(check, RegexCheck):
        flags = re.IGNORECASE if check.ignore_case else 0
        match = re.search(check.pattern, text, flags)
        if check.must == "not_match" and match:
            return f"found {match.group(0)!r}"
        if check.must == "match" and not match:
            return f"pattern {check.pattern!r} not found"
        return None
    if isinstance(check, KeywordCheck):
        hay = text.lower() if check.ignore_case else text
        present = [k for k in check.keywords if (k.lower() if check.ignore_case else k) in hay]
        if check.must == "exclude" and present:
            return f"contains {present}"
        if check.must == "include_any" and not present:
            return f"contains none of {check.keywords}"
        if check.must == "include_all" and len(present) < len(check.keywords):
            missing = [k for k in check.keywords if k not in present]
            return f"missing {missing}"
        return None
    if isinstance(check, LengthCheck):
        chars, words = len(text), len(text.split())
        if check.min_chars is not None and chars < check.min_chars:
            return f"{chars} characters, fewer than {check.min_chars}"
        if check.max_chars is not None and chars > check.max_chars:
            return f"{chars} characters, more than {check.max_chars}"
        if check.min_words is not None and words < check.min_words:
            return f"{words} words, fewer than {check.min_words}"
        if check.max_words is not None and words > check.max_words:
            return f"{words} words, more than {check.max_words}"
        return None
    if isinstance(check, JsonSchemaCheck):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"not JSON: {exc.msg}"
        errors = list(jsonschema.Draft202012Validator(check.json_schema).iter_errors(doc))
        if errors:
            return "; ".join(f"{e.json_path}: {e.message}" for e in errors[:3])
        return None
    raise TypeError(f"unknown check type {type(check).__name__}")
