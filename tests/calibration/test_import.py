"""`judge ratings import/export/stats` through the CLI on the real store: the shared
K-QA and DICES figures, idempotent re-import, scale checks, pack imports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cli import run_cli

KQA_MAP = "raters=label_0|label_1|label_2"
DICES_MAP = "records=instances,item=id,values=annotations.safety.individual_human_scores"




def stats(capsys, *extra: str) -> list[dict]:
    code, out, err = run_cli(["ratings", "stats", "--bootstrap", "200", "--json", *extra], capsys)
    assert code == 0, err
    return json.loads(out)


def test_k_qa_import_then_stats_fleiss_kappa(judge_home, human_ratings_dir, capsys):
    path = human_ratings_dir / "k-qa" / "NLI_medical_annotator.csv"
    args = ["ratings", "import", str(path), "--rubric", "healthcare/claim-entailment",
            "--map", KQA_MAP]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "1197 new of 1197 ratings" in out and "399 new of 399 items" in out
    code, out, _ = run_cli(args, capsys)
    assert "0 new of 1197 ratings" in out and "0 new of 399 items" in out
    (s,) = stats(capsys)
    assert (s["items"], s["ratings"], s["raters"]) == (399, 1197, 3)
    assert s["ratings_per_item"] == {"mean": 3.0, "min": 3, "max": 3}
    k = s["agreement"]["fleiss_kappa"]
    assert k["value"] == pytest.approx(0.72, abs=0.01)
    assert k["low"] < k["value"] < k["high"]
    # the items went in with the pack's declared mapping for this file
    from judge.store import Store

    with Store.open() as store:
        item = store.get_items(s["dataset_id"], ["2"])["2"]
    assert item.input.startswith("Alright so I dont know much about Lexapro")
    assert item.reference and item.output
    # plain-text output names the figure
    code, out, _ = run_cli(["ratings", "stats", "--bootstrap", "100"], capsys)
    assert "Fleiss' kappa: 0.719" in out


def test_dices_crowd_import_krippendorff_alpha(judge_home, human_ratings_dir, capsys):
    path = human_ratings_dir / "dices-350" / "dices_350_crowdsourced.json"
    code, out, err = run_cli(["ratings", "import", str(path), "--rubric",
                              "healthcare/dialogue-safety", "--map", DICES_MAP, "--items-map",
                              "input=instance.user_prompt,output=instance.response"], capsys)
    assert code == 0, err
    (s,) = stats(capsys, "--rubric", "healthcare/dialogue-safety")
    assert (s["items"], s["raters"]) == (350, 123)
    a = s["agreement"]["krippendorff_alpha_nominal"]
    assert a["value"] == pytest.approx(0.16, abs=0.01)
    assert a["low"] < a["value"] < a["high"]


def test_unknown_label_is_a_clear_error_and_nothing_is_stored(judge_home, tmp_path, capsys):
    path = tmp_path / "long.csv"
    path.write_text("item_id,rater,label,output\n"
                    "a,r1,Entailment,x\n"
                    "a,r2,Entailed,x\n", encoding="utf-8")
    code, _, err = run_cli(["ratings", "import", str(path), "--rubric",
                            "healthcare/claim-entailment"], capsys)
    assert code == 2
    assert "Unknown label 'Entailed'" in err and "Did you mean: Entailment" in err
    assert "item a, rater r2" in err and "Traceback" not in err
    code, _, err = run_cli(["ratings", "stats"], capsys)
    assert code == 2 and "No human ratings stored" in err


def test_likert_out_of_scale_is_refused(judge_home, tmp_path, capsys):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"item_id": "1", "rater": "a", "score": 7}) + "\n")
    code, _, err = run_cli(["ratings", "import", str(path), "--rubric", "tone"], capsys)
    assert code == 2 and "outside the likert scale 1..5" in err


def test_pack_import_and_export_round_trip(judge_home, tmp_path, capsys):
    code, out, err = run_cli(["ratings", "import", "--pack", "finance", "--json"], capsys)
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 3 and all(r["new_ratings"] == r["ratings"] > 0 for r in results)
    code, out, _ = run_cli(["ratings", "import", "--pack", "finance", "--json"], capsys)
    assert all(r["new_ratings"] == 0 for r in json.loads(out))
    rubric = results[0]["rubric_id"]
    dest = tmp_path / "export.csv"
    code, out, err = run_cli(["ratings", "export", "--rubric", rubric, "--out", str(dest)],
                             capsys)
    assert code == 0, err
    rows = list(csv.DictReader(dest.open(encoding="utf-8")))
    assert len(rows) == results[0]["ratings"]
    assert {r["rubric_id"] for r in rows} == {rubric}
    # the long-form export imports back onto the same ratings (a new dataset, same figures)
    code, out, err = run_cli(["ratings", "import", str(dest), "--rubric", rubric, "--map",
                              "item=item_id,rater=rater_id,score=score" if rows[0]["score"]
                              and not rows[0]["label"] else
                              "item=item_id,rater=rater_id,label=label", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)[0]["new_ratings"] == len(rows)


def test_either_file_or_pack(judge_home, capsys):
    code, _, err = run_cli(["ratings", "import"], capsys)
    assert code == 2 and "Give either FILE" in err


def test_import_from_any_directory(judge_home, tmp_path: Path, capsys):
    path = tmp_path / "wide.json"
    path.write_text(json.dumps({"rows": [
        {"id": "x1", "output": "o1", "ratings": ["pass", "pass"]},
        {"id": "x2", "output": "o2", "ratings": ["fail", None]},
    ]}))
    code, out, err = run_cli(["ratings", "import", str(path), "--rubric",
                              "healthcare/phi-exposure", "--map",
                              "records=rows,item=id,values=ratings", "--json"], capsys)
    assert code == 0, err
    (r,) = json.loads(out)
    assert (r["form"], r["ratings"], r["items"], r["raters"]) == ("wide", 3, 2, 2)
