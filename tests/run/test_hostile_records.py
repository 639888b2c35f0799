"""Hostile records files: each bad line costs that line (numbered, with a reason), a bad file one clear error."""

import codecs
import gzip
import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsm_nb.core.records import MAX_ID_BYTES
from mlsm_nb.run.records import InputFileError, Rejected, declared_types, read_records

GOOD = [{"id": i, "data": {"x": i}} for i in range(3)]


def jsonl(records):
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def collect(path, id_field="id", types=None):
    rows = list(read_records(path, id_field, types))
    good = [r for _, r in rows if not isinstance(r, Rejected)]
    bad = {r.line: r for _, r in rows if isinstance(r, Rejected)}
    return good, bad


def test_a_non_utf8_byte_costs_its_line_only(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl(GOOD[:1]) + b'{"id": "bad", "data": {"x": "caf\xe9"}}\n' + jsonl(GOOD[1:]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == [0, 1, 2]
    assert bad[2].reason == "not valid UTF-8 (byte 0xe9 at column 33)"


def test_a_bom_does_not_reject_the_first_record(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + jsonl(GOOD))
    good, bad = collect(path)
    assert good == GOOD and bad == {}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_file_is_one_clear_error(tmp_path, encoding):
    path = tmp_path / "r.jsonl"
    text = jsonl(GOOD).decode()
    path.write_bytes((codecs.BOM_UTF16_BE + text.encode("utf-16-be")) if encoding == "utf-16-be"
                     else text.encode(encoding))
    with pytest.raises(InputFileError, match="UTF-16 text; records files must be UTF-8"):
        list(read_records(path))


def test_a_record_nested_300_deep_is_rejected_at_reading(tmp_path):
    path = tmp_path / "r.jsonl"
    deep = b'{"id": "deep", "data": {"x": ' + b"[" * 300 + b"]" * 300 + b"}}\n"
    path.write_bytes(jsonl(GOOD[:1]) + deep + jsonl(GOOD[1:]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == [0, 1, 2]
    assert bad[2].reason.startswith("nested too deeply to be stored as JSON")


def test_a_truncated_gz_keeps_what_came_before_and_says_where_it_ends(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    many = [{"id": i, "data": {"x": i, "pad": "y" * 50}} for i in range(2000)]
    whole = gzip.compress(jsonl(many))
    path.write_bytes(whole[: len(whole) // 2])
    good, bad = collect(path)
    assert 0 < len(good) < 2000 and [r["id"] for r in good] == list(range(len(good)))
    (line, rejected), = bad.items()
    assert line == len(good) + 1
    assert rejected.reason.startswith("the compressed file is cut short or corrupt here")


def test_a_gz_that_is_not_gzip_is_one_clear_error(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(jsonl(GOOD))
    with pytest.raises(InputFileError, match="not a gzip file"):
        list(read_records(path))


def test_upper_case_names_are_read_like_lower_case(tmp_path):
    path = tmp_path / "R.JSONL.GZ"
    path.write_bytes(gzip.compress(jsonl(GOOD)))
    assert collect(path)[0] == GOOD


def test_a_directory_is_named_as_one(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(InputFileError, match=re.escape("d.jsonl: is a directory")):
        list(read_records(tmp_path / "d.jsonl"))


def test_a_non_parquet_file_is_one_clear_error(tmp_path):
    path = tmp_path / "r.parquet"
    path.write_text("id,x\n1,2\n")
    with pytest.raises(InputFileError, match="not a Parquet file"):
        list(read_records(path))


def test_a_ragged_csv_row_costs_that_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,x\n1,2\n2,3,4\n3\n4,5\n")
    good, bad = collect(path)
    assert good == [{"id": "1", "data": {"x": 2}}, {"id": "4", "data": {"x": 5}}]
    assert bad[3].reason == "has 3 cells where the header has 2"
    assert bad[4].reason == "has 1 cells where the header has 2"


def test_a_non_utf8_csv_row_costs_that_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"id,name\n1,ok\n2,caf\xe9\n3,fine\n")
    good, bad = collect(path)
    assert [r["id"] for r in good] == ["1", "3"]
    assert bad[3].reason == "not valid UTF-8"


def test_csv_ids_stay_text_exactly_as_written(tmp_path):
    path = tmp_path / "r.csv"
    big = "1" * 30
    path.write_text(f"id,x\n00123,1\n123,2\n{big},3\n,4\n")
    good, bad = collect(path)
    assert [r["id"] for r in good] == ["00123", "123", big]
    assert bad == {5: Rejected(5, "the id cell 'id' is empty")}


def test_one_empty_int_cell_affects_one_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,x,label\na,1,p\nb,,q\nc,3,\n")
    good, _ = collect(path, types={"x": "int", "label": "str"})
    assert [r["data"] for r in good] == [{"x": 1, "label": "p"}, {"x": None, "label": "q"}, {"x": 3, "label": ""}]
    assert all(type(r["data"]["x"]) is int for r in good if r["data"]["x"] is not None)


def test_cells_are_converted_by_the_declared_types(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,n,f,b,s,free\na,7,7,true,007,7\nb,x,1e3,False,NA,2.5\nc,1.5,nan,maybe,,NA\n")
    types = declared_types([{"n": int, "f": "float"}, {"b": {"type": "bool"}, "s": str}])
    good, _ = collect(path, types=types)
    assert [r["data"] for r in good] == [
        {"n": 7, "f": 7.0, "b": True, "s": "007", "free": 7},
        {"n": "x", "f": 1000.0, "b": False, "s": "NA", "free": 2.5},  # "x" for an int: the model says bad_type
        {"n": "1.5", "f": None, "b": "maybe", "s": "", "free": None},
    ]
    assert type(good[0]["data"]["f"]) is float


def test_declared_types_leave_out_conflicts():
    assert declared_types([{"x": int, "y": str}, {"x": float}, None]) == {"y": "str"}


def test_parquet_nullable_int_and_timestamps_do_not_crash(tmp_path):
    frame = pd.DataFrame({
        "id": pd.array([1, None, 3], dtype="Int64"),
        "n": pd.array([5, None, 7], dtype="Int64"),
        "when": pd.to_datetime(["2024-01-02", None, "2024-03-04 05:06:07"], format="ISO8601"),
    })
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    good, bad = collect(path, types={"when": "str"})
    assert good == [{"id": 1, "data": {"n": 5, "when": "2024-01-02T00:00:00"}},
                    {"id": 3, "data": {"n": 7, "when": "2024-03-04T05:06:07"}}]
    assert bad == {3: Rejected(3, "id field 'id' is null; an id is a string or an integer")}


def test_parquet_ids_keep_their_type_and_a_corrupt_body_is_one_error(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"id": ["00123", "7"], "x": [1.5, float("nan")]}), path)
    assert collect(path)[0] == [{"id": "00123", "data": {"x": 1.5}}, {"id": "7", "data": {"x": None}}]
    body = path.read_bytes()
    path.write_bytes(body[:4] + b"\0" * (len(body) - 8) + body[-4:])
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        list(read_records(path))


def test_ids_keep_their_json_type(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl([{"id": 1, "data": {}}, {"id": "1", "data": {}}, {"id": 1, "data": {}}]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == [1, "1"]
    assert bad[3].reason.startswith("duplicate id 1 ")


@pytest.mark.parametrize("record_id, words", [
    (1.0, "id field 'id' must be a string or an integer, got float"),
    (True, "id field 'id' must be a string or an integer, got bool"),
    (2 ** 63, "integer id field 'id' does not fit in 64 bits"),
    ("é" * 600, f"id field 'id' is 1,200 bytes long; the limit is {MAX_ID_BYTES:,}"),
])
def test_bad_ids_are_rejected_at_reading_without_keeping_them(tmp_path, record_id, words):
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl([{"id": record_id, "data": {}}, {"id": "ok", "data": {}}]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == ["ok"]
    assert bad[1].reason.startswith(words) and bad[1].record_id is None


def test_a_17mb_id_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl(GOOD[:1]) + b'{"id": "' + b"x" * 17_000_000 + b'", "data": {}}\n' + jsonl(GOOD[1:]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == [0, 1, 2]
    assert bad[2].reason == "id field 'id' is 17,000,000 bytes long; the limit is 1,024"
    assert bad[2].to_dict() == {"line": 2, "id": None, "reason": bad[2].reason}


def test_a_csv_of_the_example_leads_reads_back_exactly_with_the_notebooks_field_types(tmp_path):
    from conftest import NOTEBOOKS
    from mlsm_nb.leads import generate_leads
    from mlsm_nb.notebook.contract import find_notebooks, lint_notebook

    leads = list(generate_leads(500, seed=3))
    path = tmp_path / "leads.csv"
    pd.DataFrame([{"id": lead["id"], **lead["data"]} for lead in leads]).to_csv(path, index=False)
    types = declared_types(lint_notebook(p).fields for p in find_notebooks([NOTEBOOKS]))
    assert collect(path, types=types) == (leads, {})


def test_a_pandas_written_int_column_with_one_missing_cell_affects_one_row(tmp_path):
    path = tmp_path / "r.csv"
    frame = pd.DataFrame({"id": ["a", "b", "c"], "n": [1, None, 3]})  # pandas makes it float: 1.0, , 3.0
    frame.to_csv(path, index=False)
    good, bad = collect(path, types={"n": "int"})
    assert [r["data"]["n"] for r in good] == [1, None, 3] and bad == {}
    assert type(good[0]["data"]["n"]) is int
