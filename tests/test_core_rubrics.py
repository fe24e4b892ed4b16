"""The core rubrics in rubrics/: they load, cover the required dimensions, and their
anchors are substantive (distinct full sentences that differ from their neighbours)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from judge.rubrics import LikertScale, Rubric, load_core_rubrics, load_rubric

CORE_DIR = Path(__file__).resolve().parent.parent / "rubrics"
REQUIRED = {"safety", "factuality", "groundedness", "tone", "relevance", "completeness"}
CORE_FILES = sorted(CORE_DIR.glob("*.yaml"))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def anchor_problems(rubric: Rubric) -> list[str]:
    """Why a likert rubric's anchors fall short of a careful rater's needs (empty if fine).

    Each anchor must be at least one full sentence (ends with a period, 8+ words), no two
    anchors may be the same text, and neighbouring anchors must not be near-copies (word
    overlap, Jaccard, at most 0.6) so each level says something different in substance.
    """
    scale = rubric.scale
    if not isinstance(scale, LikertScale):
        return []
    problems = []
    texts = {level: " ".join(scale.anchors[level].split()) for level in scale.levels}
    for level, text in texts.items():
        if not text.endswith("."):
            problems.append(f"{rubric.id} anchor {level} does not end with a period")
        if len(text.split()) < 8:
            problems.append(f"{rubric.id} anchor {level} has fewer than 8 words")
    if len(set(texts.values())) != len(texts):
        problems.append(f"{rubric.id} has two anchors with the same text")
    for lo in scale.levels[:-1]:
        a, b = _words(texts[lo]), _words(texts[lo + 1])
        overlap = len(a & b) / len(a | b)
        if overlap > 0.6:
            problems.append(f"{rubric.id} anchors {lo} and {lo + 1} overlap {overlap:.2f}")
    return problems


def test_required_core_rubrics_are_present() -> None:
    rubrics = load_core_rubrics()
    assert REQUIRED <= set(rubrics), f"missing: {sorted(REQUIRED - set(rubrics))}"
    for rid, rubric in rubrics.items():
        assert rubric.pack is None, f"core rubric {rid} must have a bare id"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.stem)
def test_core_rubric_loads_and_is_named_after_its_file(path: Path) -> None:
    rubric = load_rubric(path)
    assert rubric.id == path.stem
    assert rubric.instructions.strip() and rubric.description.strip()


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.stem)
def test_core_rubric_anchors_are_substantive(path: Path) -> None:
    assert anchor_problems(load_rubric(path)) == []


def test_anchor_check_catches_placeholder_anchors() -> None:
    # The anchor test must be able to fail: a rubric with copied, terse anchors.
    good = load_rubric(CORE_DIR / "tone.yaml")
    data = good.model_dump(mode="json", by_alias=True)
    data["scale"]["anchors"] = {str(i): "Bad." if i < 3 else "Good enough." for i in range(1, 6)}
    bad = Rubric.model_validate(data)
    problems = anchor_problems(bad)
    assert any("fewer than 8 words" in p for p in problems)
    assert any("same text" in p for p in problems)
    assert any("overlap" in p for p in problems)


def test_reference_and_context_rubrics_see_their_evidence() -> None:
    rubrics = load_core_rubrics()
    assert "reference" in rubrics["factuality"].inputs
    assert "reference" in rubrics["completeness"].inputs
    assert "context" in rubrics["groundedness"].inputs
    # Without the evidence the judge cannot assess these, so it must be allowed to say so.
    for rid in ("factuality", "completeness", "groundedness"):
        assert rubrics[rid].allow_abstain, rid
