"""Datasets: JSONL/CSV into items through a column mapping, with errors that point at the fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge.datasets import Item, dataset_hash, parse_mapping, read_items
from judge.errors import DatasetError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_items(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl",
                 '{"id": "q1", "input": "hi", "output": "hello", "topic": "greeting"}\n\n'
                 '{"id": 2, "input": "2+2?", "output": "4", "reference": "4"}\n')
    items = read_items(path)
    assert [i.id for i in items] == ["q1", "2"]
    assert items[0].metadata == {"topic": "greeting"}
    assert items[1].reference == "4" and items[1].context is None


def test_jsonl_bad_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"id": "a", "output": "x"}\n{"id": "b", "output": \n')
    with pytest.raises(DatasetError, match=r"d.jsonl: line 2: invalid JSON"):
        read_items(path)
    path = write(tmp_path / "e.jsonl", '{"id": "a", "output": "x"}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"line 2: expected a JSON object, got list"):
        read_items(path)


def test_csv_with_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv",
                 "qid,question,answer,gold,lang\nx1,What is 2+2?,4,4,en\nx2,Capital of France?,"
                 "Paris,Paris,en\n")
    items = read_items(path, "id=qid,input=question,output=answer,reference=gold")
    assert items[0] == Item(id="x1", input="What is 2+2?", output="4", reference="4",
                            metadata={"lang": "en"})
    assert items[1].output == "Paris"


def test_csv_missing_column_lists_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "question,answer\nq,a\n")
    with pytest.raises(DatasetError) as exc:
        read_items(path, {"input": "question", "output": "response"})
    msg = str(exc.value)
    assert "line 2" in msg and "missing column 'response'" in msg
    assert "Columns found: answer, question." in msg


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl",
                 '{"id": "a", "output": "1"}\n{"id": "b", "output": "2"}\n{"id": "a", "output": "3"}\n')
    with pytest.raises(DatasetError, match=r"line 3: duplicate item id 'a' \(first seen on line 1\)"):
        read_items(path)


def test_ids_default_to_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "input,output\na,b\nc,d\n")
    assert [i.id for i in read_items(path)] == ["2", "3"]


def test_metadata_column_json(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl",
                 json.dumps({"id": "a", "output": "x", "metadata": {"k": 1}, "extra": "e"}) + "\n")
    assert read_items(path)[0].metadata == {"k": 1, "extra": "e"}
    path = write(tmp_path / "d.csv", 'id,output,metadata\na,x,"{not json"\n')
    with pytest.raises(DatasetError, match="metadata is not JSON"):
        read_items(path)


@pytest.mark.parametrize(("spec", "expected"), [
    ("input=question,output=answer", {"input": "question", "output": "answer"}),
    (["input=question", "output = answer ,"], {"input": "question", "output": "answer"}),
    ({"reference": "gold"}, {"reference": "gold"}),
    ("id=", {"id": ""}),
    (None, {}),
])
def test_parse_mapping(spec, expected) -> None:
    assert parse_mapping(spec) == expected


def test_parse_mapping_errors() -> None:
    with pytest.raises(DatasetError, match="Bad column mapping 'input'.*FIELD=COLUMN"):
        parse_mapping("input")
    with pytest.raises(DatasetError) as exc:
        parse_mapping("inptu=question")
    assert "Unknown item field 'inptu'" in str(exc.value) and "input" in str(exc.value)


def test_unsupported_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Unsupported dataset format '.xlsx'"):
        read_items(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DatasetError, match="Dataset not found"):
        read_items(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="no items"):
        read_items(write(tmp_path / "empty.jsonl", "\n"))


def test_dataset_hash_and_content_key(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", '{"id": "a", "output": "x"}\n')
    b = write(tmp_path / "b.jsonl", '{"id": "a", "output": "x"}\n')
    assert dataset_hash(a) == dataset_hash(b)
    write(b, '{"id": "a", "output": "y"}\n')
    assert dataset_hash(a) != dataset_hash(b)
    one, two = Item(id="1", output="x"), Item(id="2", output="x")
    assert one.content_key() == two.content_key()
    assert one.content_key() != Item(id="1", output="x", reference="r").content_key()
