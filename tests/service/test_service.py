"""judge.service in-process: chunking, calibration maps applied in chunks, a changed rubric."""

from __future__ import annotations

import pytest

from judge import service
from judge.calibration.agreement import ScaleSpec
from judge.calibration.maps import IsotonicMap
from judge.engine import count_units
from judge.errors import JobError
from tests.service.helpers import items, spec


def test_chunks_cover_every_unit_once_in_whole_items(sqlite_store, fake_provider, monkeypatch):
    monkeypatch.setenv("JUDGE_CHUNK_UNITS", "5")
    its = items(7)
    sp = spec(fake_provider.url, rubrics=("tone", "safety"))
    job, created = service.create_job(sqlite_store, sp, its)
    chunks = [sqlite_store.get_chunk(job.id, i) for i in range(len(sqlite_store.unfinished_chunks(job.id)))]
    ids = [i for c in chunks for i in c.units]
    assert sorted(ids) == [i.id for i in its]  # every item in exactly one chunk
    assert all(len(c.units) == 3 for c in chunks[:-1])  # 2 units an item: 6 >= 5 per chunk
    rubrics = service.pinned_rubrics(sp)
    assert job.total_units == count_units(its, rubrics, sp.judges, 1) == 14
    done = service.run_job(sqlite_store, job.id)
    assert done.status == "succeeded" and done.done_units == 14 == sqlite_store.count_judgments(job.id)
    assert fake_provider.count == 14


def test_stored_calibration_map_is_applied_in_chunks(sqlite_store, fake_provider):
    sp = spec(fake_provider.url, rubrics=("tone",))
    tone = service.pinned_rubrics(sp)[0]
    scale = ScaleSpec.likert(tone.scale.min, tone.scale.max)
    cmap = IsotonicMap((float(tone.scale.min), float(tone.scale.max)), (2.0, 3.0), scale, 10)
    sqlite_store.save_calibration(
        rubric_id=tone.id, rubric_version=tone.version, rubric_hash=tone.content_hash,
        judge_model=sp.judges[0].model, prompt_hash=None, split="test", figures={},
        map=cmap.to_dict(), approved=True)
    job, _ = service.submit(sqlite_store, sp, items(3), background=False)
    got = list(sqlite_store.iter_judgments(job.id))
    assert len(got) == 3
    for j in got:
        assert j.calibrated_score == pytest.approx(cmap.apply(j.score))


def test_a_rubric_changed_since_submission_fails_the_job(sqlite_store, fake_provider):
    sp = spec(fake_provider.url, rubrics=("tone",))
    changed = sp.model_copy(update={"rubrics": [sp.rubrics[0].model_copy(update={"hash": "0" * 64})]})
    with pytest.raises(JobError, match="changed since the job was submitted"):
        service.create_job(sqlite_store, changed, items(2))
