import gzip
import hashlib
import json
import os
import re
import time

import pandas as pd
import pytest

from mlsm_nb.run.records import InputFileError, Rejected, read_records


def collect(path, id_field="id"):
    rows = list(read_records(path, id_field))
    good = [r for _, r in rows if not isinstance(r, Rejected)]
    bad = [r for _, r in rows if isinstance(r, Rejected)]
    return good, bad


def test_jsonl_plain_and_gzip(tmp_path):
    lines = [json.dumps({"id": i, "data": {"x": i}}) for i in range(3)]
    plain = tmp_path / "r.jsonl"
    plain.write_text("\n".join(lines) + "\n\n")
    packed = tmp_path / "r.jsonl.gz"
    with gzip.open(packed, "wt") as f:
        f.write("\n".join(lines))
    assert collect(plain)[0] == collect(packed)[0] == [{"id": i, "data": {"x": i}} for i in range(3)]


def test_bad_lines_are_rejected_with_line_number_and_reason(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([
        '{"id": "a", "data": {"x": 1}}',
        '{"id": "b", "data": {"x": 1',
        '{"data": {"x": 1}}',
        '{"id": "a", "data": {"x": 2}}',
        '[1, 2]',
        '{"id": "c", "data": 5}',
        '{"id": "d", "data": {"x": 3}}',
    ]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == ["a", "d"]
    reasons = {b.line: b.reason for b in bad}
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "has no id field 'id'"
    assert reasons[4] == "duplicate id 'a' (first on line 1)"
    assert reasons[5] == "is a list, not a mapping"
    assert reasons[6] == "'data' must be a mapping, got int"


def test_csv_and_parquet_are_flat_with_none_for_missing(tmp_path):
    frame = pd.DataFrame({"lead_id": ["a", "b"], "x": [1.5, None], "name": ["n", None], "n": [1, 2]})
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_parquet(tmp_path / "r.parquet")
    for name in ("r.csv", "r.parquet"):
        good, bad = collect(tmp_path / name, "lead_id")
        assert bad == []
        assert good[1] == {"lead_id": "b", "data": {"x": None, "name": None, "n": 2}}
        assert type(good[0]["data"]["n"]) is int and type(good[0]["data"]["x"]) is float


@pytest.mark.parametrize("name, content, words", [
    ("missing.jsonl", None, "no such file"),
    ("empty.jsonl", "", "the file is empty"),
    ("blank.jsonl", "\n\n", "holds no records"),
    ("r.txt", "x", "unknown records format"),
    ("noid.csv", "x,y\n1,2\n", "no id column 'id' (columns: x, y)"),
    ("empty.csv", "\n", "the file is empty"),
])
def test_file_level_problems(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError, match=re.escape(words)) as info:
        list(read_records(path))
    assert str(path) in str(info.value)


def test_records_before_a_file_breaks_off_are_still_yielded(tmp_path, monkeypatch):
    from mlsm_nb.run import records

    def breaks_off(path, lines=None):
        yield from ((n, {"id": n, "data": {}}) for n in range(1, 11))
        raise records.InputFileError(f"{path}: not a readable Parquet file: corrupt row group")

    monkeypatch.setattr(records, "_json_lines", breaks_off)
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "data": {}}\n')
    seen = []
    try:
        for number, _ in read_records(path):
            seen.append(number)
    except records.InputFileError as exc:
        assert "corrupt row group" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    assert seen == list(range(1, 11))


@pytest.mark.parametrize("count, fails_after", [(8, None), (9, None), (0, None), (8, 4), (9, 4), (3, 0)])
def test_chunks_yield_every_item_once_in_order_and_what_came_before_an_error(count, fails_after):
    from mlsm_nb.run.records import _chunks

    def items():
        for i in range(count):
            if i == fails_after:
                raise OSError("read error")
            yield i

    seen = []
    try:
        for chunk in _chunks(items(), 4):
            assert 0 < len(chunk) <= 4
            seen += chunk
    except OSError:
        assert fails_after is not None
    else:
        assert fails_after is None
    assert seen == list(range(count if fails_after is None else fails_after))


# -- the bytes a run reads: hashed once, as read; a file that changes while read fails --------------

def write_lines(path, count):
    path.write_bytes(b"".join(json.dumps({"id": i, "data": {"x": i}}).encode() + b"\n" for i in range(count)))
    return path


def test_the_sha256_is_that_of_the_bytes_read_whatever_the_format(tmp_path):
    from mlsm_nb.run.records import read_batches

    lines = write_lines(tmp_path / "r.jsonl", 500)
    frame = pd.DataFrame({"id": range(500), "x": range(500)})
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_parquet(tmp_path / "r.parquet")
    for name in ("r.jsonl.gz", "r.csv.gz"):
        (tmp_path / name).write_bytes(gzip.compress((tmp_path / name[:-3]).read_bytes() if name != "r.jsonl.gz"
                                                    else lines.read_bytes()))
    for name in ("r.jsonl", "r.jsonl.gz", "r.csv", "r.csv.gz", "r.parquet"):
        summary = {}
        scored = sum(len(batch) for _, batch in read_batches(tmp_path / name, "id", 100, None,
                                                              tmp_path / "rejected.jsonl", summary))
        assert scored == 500 and summary["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def shrink(path):
    os.truncate(path, path.stat().st_size // 2)


def rewrite_in_place(path):
    body = path.read_bytes()
    time.sleep(0.01)  # a later modification time than the one the reader opened
    path.write_bytes(body.replace(b'"x": 1}', b'"x": 7}'))


def replace(path):
    path.with_name("new").write_bytes(path.read_bytes())
    os.replace(path.with_name("new"), path)


@pytest.mark.parametrize("change, words", [
    (shrink, "its size went from {size:,} to {half:,} bytes"),
    (rewrite_in_place, "it was written to (its modification time changed)"),
    (replace, "another file took its place"),
    (os.remove, "it was removed or renamed"),
])
def test_a_file_that_changes_while_it_is_read_is_named_and_refused(tmp_path, change, words):
    from mlsm_nb.run.records import InputChanged

    path = write_lines(tmp_path / "r.jsonl", 1000)
    size = path.stat().st_size
    rows = read_records(path)
    next(rows)  # the file is open, and read ahead
    change(path)
    with pytest.raises(InputChanged, match=re.escape(f"{path}: the records file changed while the run read it "
                                                     f"({words.format(size=size, half=size // 2)})")):
        list(rows)


def test_a_resume_compares_the_files_identity_until_its_sha256_is_known(tmp_path):
    from mlsm_nb.exceptions import ConfigError
    from mlsm_nb.run.records import check_same_input, input_identity

    path = write_lines(tmp_path / "r.jsonl", 10)
    recorded = {"path": str(path), **input_identity(path)}
    check_same_input(recorded, path, "run a")  # the same file
    os.utime(path, ns=(0, 0))
    with pytest.raises(ConfigError, match="changed since run a started .its size or modification time differs"):
        check_same_input(recorded, path, "run a")
    check_same_input({**recorded, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}, path, "run a")
    with pytest.raises(ConfigError, match="changed since run a started$"):
        check_same_input({**recorded, "sha256": "0" * 64}, path, "run a")


def test_a_repeated_key_is_a_bad_record_naming_the_key(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 5, "id": 6, "data": {}}\n'
                    '{"id" : 7 , "data" : {"x": 1, "x" : 2}}\n'
                    '{"id": 8, "data": {"when": "12:00:01", "m": {"1": {"a": 1, "a": 2}}}}\n'
                    '{"id": 9, "data": {"when": "12:00:01", "note": "a \\"key\\": b"}}\n')
    good, bad = collect(path)
    assert [r["id"] for r in good] == [9]
    assert [(b.line, b.reason, b.record_id) for b in bad] == [
        (line, f"the key {key!r} appears twice in one object (JSON readers keep only the last): write each key once",
         None) for line, key in ((1, "id"), (2, "x"), (3, "a"))]


@pytest.mark.parametrize("record_id, reason", [
    ("4.0", "id field 'id' must be a string or an integer, got float 4.0 (write 4, without the fraction)"),
    ("4.5", "id field 'id' must be a string or an integer, got float 4.5"),
    ("null", "id field 'id' is null; an id is a string or an integer"),
])
def test_a_float_or_null_id_is_told_what_it_is(tmp_path, record_id, reason):
    path = tmp_path / "r.jsonl"
    path.write_text(f'{{"id": {record_id}, "data": {{}}}}\n{{"data": {{}}}}\n')
    assert [(b.line, b.reason) for b in collect(path)[1]] == [(1, reason), (2, "has no id field 'id'")]


def test_a_json_lines_batch_keeps_the_line_each_record_was_read_from(tmp_path):
    """A batch file copies the input's lines (without a BOM or line break) rather than encoding the records
    again; rows of a CSV file, which have no line of JSON, are encoded. A batch pickles as its records."""
    import codecs
    import pickle

    from mlsm_nb.run.records import read_batches

    path = tmp_path / "r.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b'{"id": 1, "data": {"a": 1.50}}\r\n{"id":1,"data":{}}\nnot json\n'
                     b'{"data": {},   "id": 2}\n')
    ((_, batch),) = read_batches(path, "id", 10, None, tmp_path / "rejected.jsonl", {}, lines=True)
    assert batch.lines == [b'{"id": 1, "data": {"a": 1.50}}', b'{"data": {},   "id": 2}']
    assert [json.loads(line) for line in batch.lines] == batch == [{"id": 1, "data": {"a": 1.5}},
                                                                   {"data": {}, "id": 2}]
    assert type(pickle.loads(pickle.dumps(batch))) is list and pickle.loads(pickle.dumps(batch)) == batch
    ((_, unkept),) = read_batches(path, "id", 10, None, tmp_path / "rejected.jsonl", {})  # lines only if asked
    assert unkept == batch and unkept.lines is None
    csv = tmp_path / "r.csv"
    csv.write_text("id,a\n1,2\n")
    ((_, rows),) = read_batches(csv, "id", 10, {"a": "int"}, tmp_path / "rejected.jsonl", {}, lines=True)
    assert rows == [{"id": "1", "data": {"a": 2}}] and rows.lines is None
