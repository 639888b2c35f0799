"""File helpers: counting lines and hashing in chunks, across chunk boundaries."""

import hashlib

from mlsm_nb.files import count_lines, file_chunks, file_sha256


def test_count_lines_counts_newlines_across_chunks(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [b'{"id": %d, "data": {"x": "%s"}}' % (i, b"y" * (i % 97)) for i in range(40_000)]  # about 2.5 MiB
    path.write_bytes(b"\n".join(rows) + b"\n")
    assert path.stat().st_size > 2 * (1 << 20)
    assert count_lines(path) == 40_000


def test_count_lines_of_an_empty_file_and_a_last_line_without_newline(tmp_path):
    empty, open_ended = tmp_path / "empty", tmp_path / "open"
    empty.write_bytes(b"")
    open_ended.write_bytes(b"a\nb\nc")
    assert (count_lines(empty), count_lines(open_ended)) == (0, 2)


def test_chunks_hold_the_whole_file_and_its_hash(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 9000  # 2.2 MiB: three chunks
    path.write_bytes(data)
    chunks = list(file_chunks(path))
    assert [len(c) for c in chunks] == [1 << 20, 1 << 20, len(data) - 2 * (1 << 20)]
    assert b"".join(chunks) == data
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
