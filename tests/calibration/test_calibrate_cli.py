"""`judge calibrate` through the CLI, with the real store and the fake provider reached
through litellm: a noisy judge, a harsh judge, alignment, reports, MLflow, the gate, and
imported judgments."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from judge.testing import verdict
from tests.cli import run_cli

BINARY = "healthcare/phi-exposure"  # pass/fail, inputs input + output
LIKERT = "tone"  # 1..5
JUDGE = "openai/fake-judge"




def tag(i: int) -> str:
    return f"[case-{i:03d}]"


def binary_ratings(path: Path, n: int, seed: int, rater_accuracy: float = 0.9) -> list[bool]:
    """Wide CSV, three raters; returns the human majority (pass) per item."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    majority = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "input", "output", "r1", "r2", "r3"])
        for i in range(n):
            votes = [bool(truth[i]) if rng.random() < rater_accuracy else not truth[i]
                     for _ in range(3)]
            majority.append(sum(votes) >= 2)
            w.writerow([f"it{i}", "Can you summarise this visit note?",
                        f"Summary {tag(i)}: rest, fluids and a follow-up if it gets worse.",
                        *["pass" if v else "fail" for v in votes]])
    return majority


def likert_ratings(path: Path, n: int, seed: int) -> list[int]:
    """Long CSV, three raters on 1..5 (truth 2..5, raters ±1 now and then)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(2, 6, n)
    medians = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "input", "output", "rater", "score"])
        for i in range(n):
            scores = [int(np.clip(truth[i] + (rng.choice([-1, 1]) if rng.random() < 0.15 else 0),
                                  1, 5)) for _ in range(3)]
            medians.append(int(np.median(scores)))
            for r, s in enumerate(scores):
                w.writerow([f"t{i}", "How do I reset my password?",
                            f"Reply {tag(i)}: open settings, then choose reset.", f"rater{r}", s])
    return medians


def import_file(path: Path, rubric: str, mapping: str, capsys) -> None:
    code, out, err = run_cli(["ratings", "import", str(path), "--rubric", rubric,
                              "--map", mapping], capsys)
    assert code == 0, err
    assert " new of " in out


def test_noisy_judge_agreement_interval_contains_implied_kappa_and_gate(
        judge_home, fake_provider, tmp_path, capsys):
    n, flip = 100, 0.2
    majority = binary_ratings(tmp_path / "r.csv", n, seed=1)
    import_file(tmp_path / "r.csv", BINARY, "raters=r1|r2|r3", capsys)
    rng = np.random.default_rng(2)
    for i, m in enumerate(majority):
        said = (not m) if rng.random() < flip else m
        fake_provider.script(verdict(passed=said, rationale="scripted"), match=tag(i),
                             forever=True)
    common = ["calibrate", "--rubric", BINARY, "--judge-model", JUDGE, "--api-base",
              fake_provider.url, "--bootstrap", "400", "--no-mlflow", "--json"]
    code, out, err = run_cli([*common, "--min-kappa", "0.3", "--max-gap", "0.6"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["approved"] is True and res["source"] == "engine"
    assert res["n_items"] == n and fake_provider.count == n
    # the kappa a judge flipping the majority with probability `flip` has in expectation
    p = float(np.mean(majority))
    q = p * (1 - flip) + (1 - p) * flip
    pe = p * q + (1 - p) * (1 - q)
    implied = ((1 - flip) - pe) / (1 - pe)
    k = res["agreement"]["estimates"]["cohen_kappa"]
    assert k["low"] <= implied <= k["high"]
    ea = res["agreement"]["estimates"]["exact_agreement"]
    assert ea["low"] <= 1 - flip <= ea["high"]
    assert res["ceiling"]["human"]["value"] > res["ceiling"]["judge"]["value"]
    # same verdicts (from the cache: no new calls), stricter gate: refused, exit 1
    code, out, _ = run_cli([*common, "--min-kappa", "0.95"], capsys)
    assert code == 1
    assert json.loads(out)["approved"] is False
    assert fake_provider.count == n
    # judge run sees the newest calibration of this judge: not approved
    from judge.packs import find_rubric
    from judge.store import Store

    r = find_rubric(BINARY)
    with Store.open() as store:
        cals = store.list_calibrations(BINARY, JUDGE)
        assert [c.approved for c in cals] == [False, True]
        assert store.latest_calibration(BINARY, r.content_hash, JUDGE).prompt_hash == \
            res["prompt_hash"]


def test_harsh_judge_isotonic_map_lowers_held_out_mae_report_and_mlflow(
        judge_home, fake_provider, tmp_path, capsys):
    n = 80
    medians = likert_ratings(tmp_path / "t.csv", n, seed=3)
    import_file(tmp_path / "t.csv", LIKERT, "item=item_id,rater=rater,score=score", capsys)
    for i, m in enumerate(medians):
        fake_provider.script(verdict(score=max(1, m - 1), rationale="harsh"), match=tag(i),
                             forever=True)
    report = tmp_path / "report"
    code, out, err = run_cli(["calibrate", "--rubric", LIKERT, "--judge-model", JUDGE,
                              "--api-base", fake_provider.url, "--bootstrap", "300",
                              "--min-kappa", "0", "--max-gap", "1", "--report", str(report),
                              "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    held = res["calibration_map"]["held_out"]
    assert held["before"]["mae"]["value"] == pytest.approx(
        np.mean([m - max(1, m - 1) for m in medians]))
    assert held["after"]["mae"]["value"] < held["before"]["mae"]["value"] - 0.5
    assert held["improvement"]["mae"]["low"] > 0
    assert res["map"]["kind"] == "isotonic"
    for name in ("report.md", "report.html", "figures.json", "confusion.png",
                 "distributions.png", "reliability.png", "agreement.png"):
        assert (report / name).stat().st_size > 0, name
    md = (report / "report.md").read_text()
    assert "Held-out MAE before the map" in md and "Calibration map (isotonic)" in md
    assert res["warnings"] == [] and res["mlflow_run_id"]
    from judge.tracking import read_run_metrics

    metrics = read_run_metrics(res["mlflow_run_id"])
    assert metrics["calibration/tone/map_after_mae"] == pytest.approx(
        held["after"]["mae"]["value"])
    assert metrics["calibration/tone/cohen_kappa_quadratic_low"] == pytest.approx(
        res["agreement"]["estimates"]["cohen_kappa_quadratic"]["low"])
    # the stored map turns the harsh raw score back into the human one
    from judge.calibration.runtime import load_calibrators
    from judge.packs import find_rubric
    from judge.store import Store

    rubric = find_rubric(LIKERT)
    with Store.open() as store:
        cal = load_calibrators(store, [rubric], [JUDGE])[(rubric.content_hash, JUDGE)]
    assert cal(2.0) == pytest.approx(3.0, abs=0.3)


@pytest.mark.parametrize("improves", [True, False])
def test_alignment_keeps_a_version_only_if_held_out_agreement_improves(
        judge_home, fake_provider, tmp_path, capsys, improves):
    n = 60
    majority = binary_ratings(tmp_path / "r.csv", n, seed=4, rater_accuracy=1.0)
    import_file(tmp_path / "r.csv", BINARY, "raters=r1|r2|r3", capsys)
    rng = np.random.default_rng(5)
    flips = (0.4, 0.0) if improves else (0.15, 0.5)
    for i, m in enumerate(majority):
        # the first call (current version), then the second (the aligned version)
        first, second = ((not m) if rng.random() < f else m for f in flips)
        fake_provider.script(verdict(passed=first, rationale="v1"),
                             verdict(passed=second, rationale="v2"), match=tag(i))
    out_dir = tmp_path / "aligned"
    code, out, err = run_cli(["calibrate", "--rubric", BINARY, "--judge-model", JUDGE,
                              "--api-base", fake_provider.url, "--bootstrap", "200",
                              "--min-kappa", "0", "--max-gap", "1", "--align",
                              "--align-out", str(out_dir), "--no-mlflow", "--json"], capsys)
    assert code == 0, err
    al = json.loads(out)["alignment"]
    assert al["new_version"] == "1.1.0" and len(al["examples"]) == 3
    assert (al["held_out_after"]["value"] > al["held_out_before"]["value"]) == improves
    assert al["kept"] is improves
    files = list(out_dir.glob("*.yaml"))
    if improves:
        from judge.rubrics import load_rubric

        assert [str(f) for f in files] == [al["path"]]
        new = load_rubric(files[0])
        assert new.version == "1.1.0"
        assert sum(tag(0)[:6] in (ex.output or "") for ex in new.examples) == 3
    else:
        assert files == [] and al["path"] is None
    assert fake_provider.count == n + al["n_test"]


def test_imported_judgments_calibrate_without_provider_calls(
        judge_home, fake_provider, tmp_path, capsys):
    n = 60
    majority = binary_ratings(tmp_path / "r.csv", n, seed=6)
    import_file(tmp_path / "r.csv", BINARY, "raters=r1|r2|r3", capsys)
    verdicts = tmp_path / "verdicts.jsonl"
    with verdicts.open("w") as fh:
        for i, m in enumerate(majority):
            fh.write(json.dumps({"item": f"it{i}", "verdict": "pass" if m else "fail"}) + "\n")
    args = ["judgments", "import", str(verdicts), "--judge-model", "other-tool/v2",
            "--rubric", BINARY, "--map", "item=item,passed=verdict"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"{n} new of {n} judgments" in out
    code, out, _ = run_cli(args, capsys)
    assert f"0 new of {n} judgments" in out
    code, out, err = run_cli(["calibrate", "--rubric", BINARY, "--judge-model", "other-tool/v2",
                              "--bootstrap", "200", "--no-mlflow", "--json"], capsys)
    res = json.loads(out)
    assert res["source"] == "imported" and res["provider_calls"] == 0
    assert fake_provider.count == 0
    assert res["agreement"]["estimates"]["exact_agreement"]["value"] == 1.0
    assert res["prompt_hash"].startswith("import:")
    assert code == (0 if res["approved"] else 1)
