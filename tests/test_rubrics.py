"""Rubrics: the shipped JSON Schema stays in sync, faults are all reported, hashes are stable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from judge.errors import RubricError
from judge.rubrics import (
    SCHEMA_PATH,
    check_rubric_file,
    core_rubrics_dir,
    generate_schema,
    load_core_rubrics,
    load_rubric,
    parse_rubric,
    schema_text,
)

REPO = Path(__file__).resolve().parent.parent
CLARITY = REPO / "tests" / "data" / "packs" / "acme" / "rubrics" / "clarity.yaml"


def _doc() -> dict:
    return yaml.safe_load(CLARITY.read_text())


def test_rubric_schema_in_sync_with_model() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(generate_schema()), (
        "judge/schemas/rubric.schema.json is stale: regenerate it with "
        "judge.rubrics.schema_text(judge.rubrics.generate_schema())")


def test_core_rubrics_load_and_include_the_required_ones() -> None:
    core = load_core_rubrics()
    assert {"safety", "factuality", "groundedness", "tone", "relevance", "completeness"} <= set(core)
    for path in core_rubrics_dir().glob("*.yaml"):
        rubric, issues = check_rubric_file(path)
        assert issues == [] and rubric is not None and rubric.pack is None


def test_every_fault_reported_with_path_rule_value(tmp_path: Path) -> None:
    doc = _doc()
    doc["pass_treshold"] = doc.pop("pass_threshold")
    doc["version"] = "1.0"
    doc["inputs"] = ["input", "output", "sideways"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    rubric, issues = check_rubric_file(path)
    assert rubric is None
    by_path = {i.path: i for i in issues}
    assert by_path["$.pass_treshold"].rule == "additionalProperties"
    assert "allowed keys" in by_path["$.pass_treshold"].message
    assert by_path["$.version"].rule == "pattern" and by_path["$.version"].value == "1.0"
    assert by_path["$.inputs[2]"].value == "sideways"
    assert all(i.file == str(path) for i in issues)
    with pytest.raises(RubricError) as exc:
        load_rubric(path)
    assert str(path) in str(exc.value) and "$.pass_treshold" in str(exc.value)


@pytest.mark.parametrize(("change", "path", "text"), [
    (lambda d: d["scale"]["anchors"].pop(2), "$.scale", "missing anchors for [2]"),
    (lambda d: d["scale"].update(min=3, max=1), "$.scale", "min (3) must be less than max (1)"),
    (lambda d: d.pop("pass_threshold"), "$", "needs a pass_threshold"),
    (lambda d: d.update(pass_threshold=7), "$", "outside the scale's range 1..3"),
])
def test_semantic_faults(change, path: str, text: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(RubricError) as exc:
        parse_rubric(doc, "doc.yaml")
    assert any(i.path == path and text in i.message for i in exc.value.issues), exc.value.issues


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nscale: [unclosed\n")
    _, issues = check_rubric_file(path)
    assert issues and issues[0].rule == "yaml" and issues[0].path.startswith("line ")


def test_content_hash_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    original = load_rubric(CLARITY)
    reordered = dict(reversed(list(_doc().items())))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(reordered, default_flow_style=True, width=1000))
    assert load_rubric(flow).content_hash == original.content_hash
    changed = _doc()
    changed["instructions"] += " Be strict."
    assert parse_rubric(changed).content_hash != original.content_hash
    assert len(original.content_hash) == 64 and int(original.content_hash, 16) >= 0


def test_content_hash_is_stable_across_processes() -> None:
    code = ("from judge.rubrics import load_rubric; import sys; "
            "print(load_rubric(sys.argv[1]).content_hash)")
    hashes = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, str(CLARITY)], capture_output=True,
                             text=True, env=env, check=True, timeout=120)
        hashes.add(out.stdout.strip())
    assert hashes == {load_rubric(CLARITY).content_hash}


def test_hash_is_sha256_of_canonical_json() -> None:
    import hashlib

    rubric = load_rubric(CLARITY)
    canonical = json.dumps(rubric.model_dump(mode="json", by_alias=True), sort_keys=True,
                           separators=(",", ":"))
    assert rubric.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_copy_with_changes_gets_its_own_content_hash() -> None:
    from judge.rubrics import load_core_rubrics

    tone = load_core_rubrics()["tone"]
    original = tone.content_hash
    changed = tone.model_copy(update={"instructions": tone.instructions + " Be strict."})
    assert changed.content_hash != original
    assert tone.model_copy().content_hash == original
