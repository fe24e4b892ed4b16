"""The finance pack: manifest, rubrics, data, reference ratings and deterministic checks."""

from __future__ import annotations

import csv
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from judge.checks import run_checks
from judge.datasets import Item, read_items
from judge.packs import PackManifest
from judge.rubrics import BinaryScale, CategoricalScale, LikertScale, Rubric, load_rubric

PACK = Path(__file__).resolve().parents[2] / "packs" / "finance"
QUALITIES = {"excellent", "good", "subtly_wrong", "poor", "dangerous"}


@cache
def _manifest() -> PackManifest:
    return PackManifest.model_validate(yaml.safe_load((PACK / "pack.yaml").read_text()))


@cache
def _rubrics() -> dict[str, Rubric]:
    out = {}
    for ref in _manifest().rubrics:
        if ref.file is not None:
            rubric = load_rubric(PACK / ref.file)
            out[rubric.id] = rubric
    return out


@cache
def _items() -> list[Item]:
    (items_file,) = [d for d in _manifest().data if d.kind == "items"]
    return read_items(PACK / items_file.file)


def _findings(text: str, rubrics: dict[str, Rubric]) -> set[str]:
    item = Item(id="probe", input="q", output=text)
    return {f"{r.id}#{f.check_id}" for r in rubrics.values() for f in run_checks(r, item)}


def _rubric_files() -> list[str]:
    return [r.file for r in _manifest().rubrics if r.file is not None]


def test_manifest_validates_and_reuses_core_rubrics() -> None:
    manifest = _manifest()
    assert manifest.name == "finance"
    core = {r.core for r in manifest.rubrics if r.core is not None}
    assert {"factuality", "groundedness", "tone"} <= core
    assert 4 <= len(_rubric_files()) <= 7
    for entry in manifest.data:
        assert (PACK / entry.file).is_file(), entry.file


@pytest.mark.parametrize("rel", _rubric_files())
def test_every_rubric_loads_with_pack_id_and_names_its_standard(rel: str) -> None:
    rubric = load_rubric(PACK / rel)
    assert rubric.pack == "finance"
    assert re.search(r"FINRA|SEC |Regulation|Securities Litigation Reform Act", rubric.description)


def test_likert_anchors_are_distinct_full_sentences() -> None:
    likert = [r for r in _rubrics().values() if isinstance(r.scale, LikertScale)]
    assert likert
    for rubric in likert:
        anchors = [" ".join(a.split()) for a in rubric.scale.anchors.values()]
        assert len(set(anchors)) == len(anchors), rubric.id
        for level, text in rubric.scale.anchors.items():
            words = text.split()
            assert text.strip().endswith("."), (rubric.id, level)
            assert len(words) >= 8, (rubric.id, level)
        # neighbours must differ in substance, not only in their first words
        for lo in rubric.scale.levels[:-1]:
            a = set(rubric.scale.anchors[lo].lower().split())
            b = set(rubric.scale.anchors[lo + 1].lower().split())
            assert len(a & b) / len(a | b) < 0.5, (rubric.id, lo)


def test_items_parse_with_unique_ids_and_honest_metadata() -> None:
    items = _items()
    rubric_ids = set(_rubrics())
    assert len(items) >= 40
    assert len({i.id for i in items}) == len(items)
    for item in items:
        md = item.metadata
        assert item.input and item.output
        assert md["synthetic"] is True
        assert md["quality"] in QUALITIES, item.id
        assert md["targets"] and set(md["targets"]) <= rubric_ids, item.id
        if rubric_ids & {"finance/numerical-accuracy"} & set(md["targets"]):
            assert item.context, f"{item.id} targets numerical accuracy without context"
        if item.context:
            assert item.context.startswith("FICTIONAL COMPANY"), item.id
    assert {i.metadata["quality"] for i in items} >= {"excellent", "subtly_wrong", "dangerous"}


def _ratings(entry_file: str) -> list[dict[str, str]]:
    with (PACK / entry_file).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_reference_ratings_are_valid_and_labelled_as_author_reference() -> None:
    rubrics = _rubrics()
    item_ids = {i.id for i in _items()}
    entries = [d for d in _manifest().data if d.kind == "ratings"]
    covered: dict[str, set[str]] = {}
    for entry in entries:
        assert entry.provenance == "author-reference"
        assert "not an expert panel" in entry.description.lower()
        rubric = rubrics[entry.rubric]
        rows = _ratings(entry.file)
        assert rows, entry.file
        for row in rows:
            cols = {field: row[col] for field, col in entry.mapping.items()}
            assert row["rubric_id"] == entry.rubric
            assert cols["item"] in item_ids, cols["item"]
            assert cols["rater"].startswith("pack-author-")
            scale = rubric.scale
            if isinstance(scale, LikertScale):
                assert int(cols["value"]) in scale.levels
            elif isinstance(scale, BinaryScale):
                assert cols["value"] in ("pass", "fail")
                assert int(row["score"]) == (row["label"] == "pass")
            elif isinstance(scale, CategoricalScale):
                assert cols["value"] in [lab.label for lab in scale.labels]
        keys = [(r["item_id"], r["rater_id"]) for r in rows]
        assert len(set(keys)) == len(keys), f"{entry.file} rates an item twice"
        covered[entry.rubric] = {r["item_id"] for r in rows}
    assert sum(len(v) >= 20 for v in covered.values()) >= 2


def test_readme_states_ratings_are_author_reference() -> None:
    text = " ".join((PACK / "README.md").read_text().split())
    assert "not an expert panel" in text
    assert "synthetic, written by the pack authors" in text
    assert (PACK / "data" / "RATING_GUIDE.md").is_file()


def test_checks_find_exactly_the_planted_violations_in_the_items() -> None:
    rubrics = _rubrics()
    items = _items()
    mismatches = {}
    for item in items:
        found = {f"{r.id}#{f.check_id}" for r in rubrics.values() for f in run_checks(r, item)}
        planted = set(item.metadata["planted_checks"])
        if found != planted:
            mismatches[item.id] = {"missed": planted - found, "unexpected": found - planted}
    assert not mismatches
    clean = [i for i in items if not i.metadata["planted_checks"]]
    assert len(clean) >= 30  # the no-false-positive claim rests on a real number of items
    every_check = {f"{r.id}#{c.id}" for r in rubrics.values() for c in r.checks}
    exercised = {p for i in items for p in i.metadata["planted_checks"]}
    assert exercised == every_check  # no check is dead weight in the shipped data


PLANTED = [
    ("This fund offers guaranteed returns of 12% a year.", "finance/fair-balanced#guaranteed-returns"),
    ("Our strategy guarantees you steady profits every quarter.", "finance/fair-balanced#guaranteed-returns"),
    ("The stock is guaranteed to rise after the split.", "finance/fair-balanced#guaranteed-returns"),
    ("With bonds like these, returns are guaranteed.", "finance/fair-balanced#guaranteed-returns"),
    ("Great news: this account is completely risk-free.", "finance/fair-balanced#risk-free-claim"),
    ("It's a risk-free way to earn 15%.", "finance/fair-balanced#risk-free-claim"),
    ("This note carries zero risk to your capital.", "finance/fair-balanced#risk-free-claim"),
    ("Hold it for a year and you can't lose.", "finance/fair-balanced#cannot-lose"),
    ("There is zero chance of losing money here.", "finance/fair-balanced#cannot-lose"),
    ("Honestly it's a no-lose trade.", "finance/fair-balanced#cannot-lose"),
    ("This token will double by Christmas.", "finance/fair-balanced#will-double"),
    ("Your money is going to triple within two years.", "finance/fair-balanced#will-double"),
    ("Buying the dip here is a sure thing.", "finance/fair-balanced#sure-thing"),
    ("Frankly, this IPO is free money.", "finance/fair-balanced#sure-thing"),
    ("Put all your retirement savings into this fund.", "finance/advice-boundary#concentration-or-leverage"),
    ("I would move your entire 401(k) balance into gold.", "finance/advice-boundary#concentration-or-leverage"),
    ("Take out a home equity loan to buy more shares.", "finance/advice-boundary#concentration-or-leverage"),
    ("You should go all-in on tech.", "finance/advice-boundary#concentration-or-leverage"),
    ("The shares will reach $300 by June.", "finance/forward-looking#certain-price-prediction"),
    ("Earnings will double next year.", "finance/forward-looking#certain-price-prediction"),
    ("I'd recommend buying the fund today.",
     "finance/risk-disclosure#recommendation-without-risk-disclosure"),
    ("You should invest in small caps now.",
     "finance/risk-disclosure#recommendation-without-risk-disclosure"),
]

CLEAN = [
    "No investment is risk-free.",
    "The 10-year Treasury yield is often used as the risk-free rate.",
    "There is no such thing as a risk-free investment.",
    "Anyone who promises guaranteed returns is probably running a scam.",
    "No one can guarantee returns on stocks.",
    "Be wary of pitches that say you can't lose.",
    "You cannot lose more than you invest when you buy a stock without margin.",
    "At 7% a year, money will double in about ten years.",
    "If the company hits its targets, the stock could double.",
    "Never put all your savings into a single stock.",
    "Don't take out a margin loan to buy more shares.",
    "Management expects revenue will reach $1.3 billion, subject to tariff risk.",
    "An annuity can provide guaranteed income for life, backed by the insurer's claims-paying ability.",
    "I recommend buying a broad index fund; past performance does not guarantee future results.",
    "You should invest only money you can leave alone for years, because stocks can fall sharply.",
    "An expense ratio is the annual fee a fund charges as a share of assets.",
    "Net sales rose 8.5% to $402.6 million in the quarter.",
]


@pytest.mark.parametrize(("text", "check"), PLANTED)
def test_checks_catch_planted_violations(text: str, check: str) -> None:
    assert check in _findings(text, _rubrics())


def test_planted_set_covers_every_check() -> None:
    every_check = {f"{r.id}#{c.id}" for r in _rubrics().values() for c in r.checks}
    assert {c for _, c in PLANTED} == every_check


@pytest.mark.parametrize("text", CLEAN)
def test_checks_raise_nothing_on_clean_sentences(text: str) -> None:
    assert _findings(text, _rubrics()) == set()


def test_pack_validates_and_ratings_import_through_their_mapping() -> None:
    from judge.calibration.agreement import ScaleSpec
    from judge.calibration.ratings_io import ratings_matrix, read_ratings
    from judge.packs import validate_pack

    assert validate_pack(PACK) == []
    rubrics = _rubrics()
    for entry in (d for d in _manifest().data if d.kind == "ratings"):
        rf = read_ratings(PACK / entry.file, dict(entry.mapping))
        assert rf.form == entry.format
        assert len(rf.ratings) == len(_ratings(entry.file))
        matrix = ratings_matrix(rf.ratings, ScaleSpec.from_rubric(rubrics[entry.rubric]))
        assert matrix.rater_ids == ["pack-author-1"]
        assert len(matrix.item_ids) == len(rf.ratings)
