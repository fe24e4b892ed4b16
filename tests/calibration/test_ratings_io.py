"""Reading ratings files (long and wide, CSV/JSONL/JSON) into a tidy table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from judge.calibration import ScaleSpec, parse_ratings_mapping, ratings_matrix, read_ratings
from judge.errors import CalibrationError, DatasetError


def test_long_csv_with_a_mapping(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("item,who,rating,output\ni1,ann,4,hello\ni1,bob,5,hello\ni2,ann,,x\ni2,bob,2,x\n")
    rf = read_ratings(f, "item=item,rater=who,score=rating")
    assert rf.form == "long"
    assert rf.ratings.values.tolist() == [["i1", "ann", "4"], ["i1", "bob", "5"],
                                          ["i2", "bob", "2"]]
    assert rf.items["output"].tolist() == ["hello", "x"]
    m = ratings_matrix(rf.ratings, ScaleSpec.likert(1, 5))
    assert m.item_ids == ["i1", "i2"] and m.rater_ids == ["ann", "bob"]
    assert np.isnan(m.values[1, 0]) and m.values[0, 1] == 5


def test_long_jsonl_with_default_columns(tmp_path):
    f = tmp_path / "r.jsonl"
    rows = [{"item_id": "a", "rater_id": "p1", "label": "Yes"},
            {"item_id": "a", "rater_id": "p2", "label": "No"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rf = read_ratings(f)
    assert rf.ratings["value"].tolist() == ["Yes", "No"]


def test_wide_csv_by_glob_and_by_list_without_item_column(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text(",claim,label_0,label_1,label_2\n0,c0,A,A,B\n1,c1,B,,B\n")
    by_glob = read_ratings(f, "raters=label_*")
    by_list = read_ratings(f, "raters=label_0|label_1|label_2")
    assert by_glob.ratings.equals(by_list.ratings)
    assert by_glob.form == "wide"
    # item ids are row numbers as datasets.read_items gives them (header = line 1)
    assert by_glob.ratings["item_id"].unique().tolist() == ["2", "3"]
    assert len(by_glob.ratings) == 5
    assert "claim" in by_glob.items.columns and "label_0" not in by_glob.items.columns


def test_wide_json_document_with_records_and_a_list_field(tmp_path):
    f = tmp_path / "d.json"
    doc = {"meta": "x", "instances": [
        {"id": 7, "annotations": {"safety": {"scores": ["Yes", "No", None]}}},
        {"id": 9, "annotations": {"safety": {"scores": ["No", "No", "Unsure"]}}}]}
    f.write_text(json.dumps(doc))
    rf = read_ratings(f, "records=instances,item=id,values=annotations.safety.scores")
    assert rf.ratings.values.tolist() == [["7", "#0", "Yes"], ["7", "#1", "No"],
                                          ["9", "#0", "No"], ["9", "#1", "No"],
                                          ["9", "#2", "Unsure"]]
    with pytest.raises(DatasetError, match="records=PATH; list-valued keys found: instances"):
        read_ratings(f, "values=annotations.safety.scores")


def test_bad_mappings_and_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="Unknown key 'rator'.*item, rater, value"):
        parse_ratings_mapping("rator=x")
    f = tmp_path / "r.csv"
    f.write_text("item,rater,value\ni,a,1\ni,a,2\n")
    with pytest.raises(DatasetError, match="rater 'a' rated item 'i' again"):
        read_ratings(f, "item=item")
    g = tmp_path / "w.csv"
    g.write_text("item,x\ni,1\n")
    with pytest.raises(DatasetError, match="cannot tell the form.*Columns found: item, x"):
        read_ratings(g)
    with pytest.raises(DatasetError, match="'label_\\*' matches no column"):
        read_ratings(g, "raters=label_*")


def test_unknown_label_in_a_ratings_file(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("item,rater,value\ni,a,Entailment\ni,b,Entailmnt\n")
    rf = read_ratings(f, "item=item")
    with pytest.raises(CalibrationError, match="Unknown label 'Entailmnt'.*Did you mean"):
        ratings_matrix(rf.ratings, ScaleSpec.categorical(["Entailment", "Neutral"]))
