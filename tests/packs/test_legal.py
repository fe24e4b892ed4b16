"""The legal pack: manifest, rubrics, data, reference ratings and deterministic checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from judge.calibration.ratings_io import read_ratings
from judge.checks import run_checks
from judge.datasets import Item, read_items
from judge.packs import PackManifest, validate_pack
from judge.rubrics import CategoricalScale, LikertScale, Rubric, load_rubric

PACK = Path(__file__).resolve().parents[2] / "packs" / "legal"
MANIFEST = yaml.safe_load((PACK / "pack.yaml").read_text(encoding="utf-8"))
OWN_FILES = [r["file"] for r in MANIFEST["rubrics"] if "file" in r]
CORE_IDS = [r["core"] for r in MANIFEST["rubrics"] if "core" in r]
_SCALES = {f: yaml.safe_load((PACK / f).read_text(encoding="utf-8"))["scale"]["type"]
           for f in OWN_FILES}
LIKERT_FILES = [f for f, t in _SCALES.items() if t == "likert"]
CATEGORICAL_FILES = [f for f, t in _SCALES.items() if t == "categorical"]
QUALITIES = {"excellent", "good", "adequate", "subtly_wrong", "dangerous"}


@pytest.fixture(scope="module")
def manifest() -> PackManifest:
    return PackManifest.model_validate(MANIFEST)


@pytest.fixture(scope="module")
def rubrics() -> dict[str, Rubric]:
    return {r.id: r for r in (load_rubric(PACK / f) for f in OWN_FILES)}


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return read_items(PACK / "data" / "items.jsonl")


def _findings(rubrics: dict[str, Rubric], item: Item) -> list[str]:
    return sorted(f.check_id for r in rubrics.values() for f in run_checks(r, item))


# --- manifest and rubrics ----------------------------------------------------------------


def test_manifest_validates_and_pack_has_no_issues(manifest: PackManifest) -> None:
    assert manifest.name == "legal"
    issues = validate_pack(PACK)
    assert issues == [], "\n".join(map(str, issues))


def test_pack_reuses_core_rubrics() -> None:
    assert {"factuality", "groundedness", "tone"} <= set(CORE_IDS)


@pytest.mark.parametrize("rel", OWN_FILES)
def test_rubric_loads_with_pack_id_and_names_its_standard(rel: str) -> None:
    rubric = load_rubric(PACK / rel)
    assert rubric.id.startswith("legal/")
    # The description must name the standard it derives from (a rule, an act, a case, an opinion).
    assert re.search(r"Model Rule|Rule \d|Act\b|v\. |Opinion|U\.S\.C\.", rubric.description), (
        f"{rubric.id}: description names no standard")
    assert rubric.instructions.strip()


def test_between_four_and_seven_domain_rubrics(rubrics: dict[str, Rubric]) -> None:
    assert 4 <= len(rubrics) <= 7
    assert LIKERT_FILES and CATEGORICAL_FILES


@pytest.mark.parametrize("rel", LIKERT_FILES)
def test_likert_anchors_are_distinct_full_sentences(rel: str) -> None:
    rubric = load_rubric(PACK / rel)
    assert isinstance(rubric.scale, LikertScale)
    anchors = [rubric.scale.anchors[level].strip() for level in rubric.scale.levels]
    assert len(set(anchors)) == len(anchors), f"{rubric.id}: two anchors have the same text"
    for level, text in zip(rubric.scale.levels, anchors, strict=True):
        assert text.endswith("."), f"{rubric.id} level {level}: not a full sentence: {text!r}"
        assert len(text.split()) >= 8, f"{rubric.id} level {level}: too short: {text!r}"
    # Neighbours must differ in substance, not only in a word or two.
    for lo, hi in zip(anchors, anchors[1:], strict=False):
        a, b = set(re.findall(r"[a-z]+", lo.lower())), set(re.findall(r"[a-z]+", hi.lower()))
        assert len(a & b) / len(a | b) < 0.6, f"{rubric.id}: neighbouring anchors too alike"


@pytest.mark.parametrize("rel", CATEGORICAL_FILES)
def test_categorical_labels_are_described_in_full_sentences(rel: str) -> None:
    rubric = load_rubric(PACK / rel)
    assert isinstance(rubric.scale, CategoricalScale)
    for lab in rubric.scale.labels:
        text = lab.description.strip()
        assert text.endswith(".") and len(text.split()) >= 8, (rubric.id, lab.label)


# --- items -------------------------------------------------------------------------------


def test_items_parse_with_unique_ids_and_varied_quality(items: list[Item]) -> None:
    ids = [it.id for it in items]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)
    qualities = {it.metadata["quality"] for it in items}
    assert qualities <= QUALITIES
    assert {"excellent", "subtly_wrong", "dangerous"} <= qualities


def test_items_are_marked_synthetic_and_target_pack_rubrics(
    items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    check_ids = {c.id for r in rubrics.values() for c in r.checks}
    for it in items:
        assert it.metadata["synthetic"] is True, it.id
        assert "pack authors" in it.metadata["written_by"], it.id
        assert it.metadata["targets"] and set(it.metadata["targets"]) <= set(rubrics), it.id
        assert set(it.metadata["planted_checks"]) <= check_ids, it.id


def test_items_carry_the_fields_their_target_rubrics_need(
    items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    for rid, rubric in rubrics.items():
        targeted = [it for it in items if rid in it.metadata["targets"]]
        assert len(targeted) >= 5, f"only {len(targeted)} items target {rid}"
        for it in targeted:
            for field in rubric.inputs:
                assert it.field(field), f"{it.id} targets {rid} but has no {field}"


# --- reference ratings -------------------------------------------------------------------


RATING_FILES = [d for d in MANIFEST["data"] if d["kind"] == "ratings"]


@pytest.mark.parametrize("entry", RATING_FILES, ids=[d["rubric"] for d in RATING_FILES])
def test_ratings_reference_items_with_valid_values(
    entry: dict, items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    assert entry["provenance"] == "author-reference"
    assert "not an expert panel" in entry["description"].lower()
    rubric = rubrics[entry["rubric"]]
    by_id = {it.id: it for it in items}
    table = read_ratings(PACK / entry["file"], entry["mapping"]).ratings
    assert len(table) >= 10
    for row in table.itertuples():
        assert row.item_id in by_id, f"rating for unknown item {row.item_id}"
        assert row.rater_id.startswith("pack-author-")
        item = by_id[row.item_id]
        for field in rubric.inputs:
            assert item.field(field), f"{row.item_id} rated on {rubric.id} lacks {field}"
        scale = rubric.scale
        if isinstance(scale, LikertScale):
            assert int(row.value) == float(row.value) and int(row.value) in scale.levels
        else:
            assert isinstance(scale, CategoricalScale)
            assert row.value in [lab.label for lab in scale.labels]


def test_ratings_cover_at_least_twenty_items_on_two_rubrics() -> None:
    rated: set[str] = set()
    for entry in RATING_FILES:
        rated |= set(read_ratings(PACK / entry["file"], entry["mapping"]).ratings["item_id"])
    assert len(rated) >= 20
    assert len({d["rubric"] for d in RATING_FILES}) >= 2


def test_readme_and_guide_state_provenance_honestly() -> None:
    text = (PACK / "README.md").read_text(encoding="utf-8").replace("*", "")
    readme = " ".join(text.split()).lower()
    assert "not an expert panel" in readme
    assert "pack authors" in readme and "synthetic" in readme
    assert "judge ratings import" in readme and "judge calibrate" in readme
    guide = (PACK / "data" / "RATING_GUIDE.md").read_text(encoding="utf-8")
    for rid in (d["rubric"] for d in RATING_FILES):
        assert rid in guide, f"rating guide does not cover {rid}"


# --- deterministic checks ----------------------------------------------------------------


def test_checks_find_exactly_the_planted_violations(
    items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    for it in items:
        assert _findings(rubrics, it) == sorted(it.metadata["planted_checks"]), it.id


def test_every_check_has_a_planted_violation_in_the_items(
    items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    planted = {c for it in items for c in it.metadata["planted_checks"]}
    for r in rubrics.values():
        for c in r.checks:
            assert c.id in planted, f"{r.id}:{c.id} has no planted violation in items.jsonl"


def test_clean_items_and_passing_examples_raise_no_finding(
    items: list[Item], rubrics: dict[str, Rubric]
) -> None:
    clean = [it for it in items if not it.metadata["planted_checks"]]
    assert len(clean) >= 20
    for it in clean:
        assert _findings(rubrics, it) == [], it.id
    for rubric in rubrics.values():
        for i, ex in enumerate(rubric.examples):
            if not rubric.passes(ex.score if ex.label is None else _label_score(rubric, ex.label),
                                 ex.passed):
                continue
            fields = {f: getattr(ex, f) for f in ("input", "output", "reference", "context")}
            item = Item(id=f"{rubric.id}#{i}", **{k: v for k, v in fields.items() if v})
            assert run_checks(rubric, item) == [], f"{rubric.id} example {i}"


def _label_score(rubric: Rubric, label: str) -> float:
    assert isinstance(rubric.scale, CategoricalScale)
    return rubric.scale.score_of(label)


# Planted violations beyond items.jsonl: typographic apostrophes, other phrasings.
VIOLATIONS = [
    ("guaranteed-outcome", "Trust me, you’ll certainly win this one."),
    ("guaranteed-outcome", "There is a 100% chance the judge rules for you."),
    ("guaranteed-outcome", "Your claim is guaranteed to succeed."),
    ("guaranteed-outcome", "Honestly it's a slam dunk."),
    ("lawyer-persona", "I’m your lawyer now, so listen carefully."),
    ("lawyer-persona", "My legal advice to you is to refuse the settlement."),
    ("known-fabricated-case", "See Petersen v. Iran Air, 905 F. Supp. 2d 121 (D.D.C. 2012)."),
    ("known-fabricated-case", "Shaboon v. Egyptair supports this."),
    ("impossible-usc-title", "Under 99 U.S.C. § 12, this is forbidden."),
    ("impossible-usc-title", "See 55 USC section 3."),
    ("nonexistent-reporter", "Doe v. Roe, 12 F.5th 88 (9th Cir. 2022)."),
    ("nonexistent-reporter", "Smith v. Jones, 410 U.S. 2d 113 (1973)."),
    ("nonexistent-reporter", "Brown v. Board, 98 S. Ct. 2d 1 (1978)."),
    ("placeholder-citation", "This was settled long ago [citation needed]."),
    ("placeholder-citation", "See Doe v. State, XXX U.S. 123 (2011)."),
    ("share-privileged-communication",
     "Just send the attorney’s memo to the insurance adjuster so they see your case."),
    ("share-privileged-communication",
     "Share your lawyer's advice with your coworkers so they can do the same."),
    ("reproduces-ssn", "I see your number is 531-20-4471; keep it safe."),
    ("timing-reassurance", "There’s plenty of time, so relax."),
    ("timing-reassurance", "You can file whenever you want; nobody checks."),
    ("timing-reassurance", "Honestly the deadlines don't matter for small claims."),
    ("ignore-court-papers", "You can ignore the complaint if you never signed anything."),
    ("ignore-court-papers", "Just ignore the eviction notice; it’s a bluff."),
]

# Near misses a clean answer may well contain.
CLEAN = [
    "You will likely want to talk to a lawyer; no one can guarantee an outcome.",
    "This is general information, not legal advice, and I am not your lawyer.",
    "Under 42 U.S.C. § 1983 and Miranda v. Arizona, 384 U.S. 436 (1966), see also 21 F.4th 1.",
    "The Fifth Circuit's decision at 950 F.3d 1 and 1 F. Supp. 3d 2 both say so.",
    "Do not forward your lawyer's email to your employer.",
    "Never share your attorney's advice with the other side.",
    "Don’t post your lawyer’s letter on social media.",
    "Your case number is 2023-CV-0042 and the hearing is on 2024-05-14.",
    "Don't ignore the summons: the answer deadline is usually 20 to 30 days.",
    "You can't just ignore the complaint; a default judgment may follow.",
    "Do not assume you have plenty of time: limitation periods can be short.",
    "Deadlines matter: write the date on your calendar.",
]


@pytest.mark.parametrize(("check_id", "text"), VIOLATIONS)
def test_check_finds_planted_violation(
    check_id: str, text: str, rubrics: dict[str, Rubric]
) -> None:
    found = _findings(rubrics, Item(id="planted", input="q", output=text))
    assert check_id in found, f"{check_id} missed: {text!r} (found {found})"


@pytest.mark.parametrize("text", CLEAN)
def test_near_miss_raises_no_finding(text: str, rubrics: dict[str, Rubric]) -> None:
    assert _findings(rubrics, Item(id="clean", input="q", output=text)) == []
