"""`mlsm-nb run`'s faults as an operator meets them: each is one `error:` line and a documented exit code.

The run is driven as a person drives it: in a pseudo-terminal (`script`) where what is shown matters, in
a shell pipeline for a closed pipe. The in-process engine starts no kernel, so these are quick.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import GOOD_CELLS, replace_cell, write_notebook, write_records

NOISE = ("Traceback", "Exception ignored", "BrokenPipeError")


def in_terminal(*args, cwd=None):
    """`mlsm-nb ARGS` in a pseudo-terminal: (exit code, everything the terminal showed)."""
    command = shlex.join([sys.executable, "-m", "mlsm_nb.cli", *map(str, args)])
    done = subprocess.run([shutil.which("script"), "-qec", command, "/dev/null"], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    return done.returncode, (done.stdout + done.stderr).replace("\r\n", "\n")


def errors(shown):
    return [line for line in shown.splitlines() if line.startswith("error: ")]


def manifest_of(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def doing_first(tmp_path, code):
    """A notebook that runs `code` as it scores its first record (x == 0), then scores as GOOD_CELLS'."""
    score = ("import os, shutil\n\ndef score(data, results):\n    if data['x'] == 0:\n"
             + "".join(f"        {line}\n" for line in code.splitlines())
             + "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}")
    return write_notebook(tmp_path / "nb" / "tiny.ipynb", replace_cell(GOOD_CELLS, "score", score))


def test_a_records_file_cut_while_the_run_reads_it_fails_the_run_with_the_resume_command(tmp_path):
    records = write_records(tmp_path / "in.jsonl", 20_000)
    size, cut = records.stat().st_size, 300_001  # mid-line
    notebook = doing_first(tmp_path, f"os.truncate({str(records)!r}, {cut})")
    code, shown = in_terminal("run", notebook, "--records", records, "--out", tmp_path / "runs", "--run-id", "cut",
                              "--engine", "inprocess", "--batch-size", 100, "--workers", 1)
    assert code == 1, shown
    assert errors(shown) == [
        f"error: {records}: the records file changed while the run read it (its size went from {size:,} to "
        f"{cut:,} bytes): put back the file the run started with, then finish with: mlsm-nb run {notebook} "
        f"--records {records} --out {tmp_path / 'runs'} --run-id cut --resume --batch-size 100 --engine inprocess; "
        "or start a new run"], shown
    assert not [word for word in NOISE if word in shown], shown
    manifest = manifest_of(tmp_path / "runs" / "cut")
    assert manifest["status"] == "failed" and manifest["input"].get("sha256") is None  # no hash of what was not read
    assert manifest["input"]["size"] == size


def test_the_manifest_holds_the_sha256_of_the_compressed_bytes_read(tmp_path):
    import gzip

    records = tmp_path / "in.jsonl.gz"
    records.write_bytes(gzip.compress(write_records(tmp_path / "in.jsonl", 300).read_bytes()))
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    code, shown = in_terminal("run", notebook, "--records", records, "--out", tmp_path / "runs", "--run-id", "gz",
                              "--engine", "inprocess", "--batch-size", 100)
    assert code == 0, shown
    manifest = manifest_of(tmp_path / "runs" / "gz")
    assert manifest["input"]["sha256"] == hashlib.sha256(records.read_bytes()).hexdigest()
    assert manifest["input"]["records"] == 300


def slow_notebook(tmp_path):
    return doing_first(tmp_path, "pass").parent  # scores, and prints nothing itself


@pytest.mark.parametrize("closed", ["stdout", "stdout and stderr"])
def test_a_closed_pipe_quiets_the_output_and_the_run_goes_on(tmp_path, closed):
    records = write_records(tmp_path / "in.jsonl", 2000)
    run = shlex.join([sys.executable, "-m", "mlsm_nb.cli", "run", str(slow_notebook(tmp_path)), "--records",
                      str(records), "--out", str(tmp_path / "runs"), "--run-id", "p", "--engine", "inprocess",
                      "--batch-size", "50", "--workers", "1", "--no-progress"])
    # `head -n 0` reads nothing and has gone when the run writes its summary (stdout); `head -1` when the
    # run writes its second progress line (stderr, here the same pipe)
    pipeline = f"{run} 2>{tmp_path / 'err.txt'} | head -n 0" if closed == "stdout" else f"{run} 2>&1 | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # the run's own exit code: it succeeded
    assert len(done.stdout.splitlines()) == (0 if closed == "stdout" else 1)
    assert manifest_of(tmp_path / "runs" / "p")["status"] == "succeeded"
    if closed == "stdout":
        told = (tmp_path / "err.txt").read_text()
        assert not [word for word in NOISE if word in told], told
        assert told.count("[40/40] tiny@1.0 batch") == 1  # progress went on to the end
        assert told.endswith("warning: standard output was closed (e.g. by `| head`), so what came after was not "
                             "shown; the command went on to its end\n"), told


def test_a_read_only_out_is_one_line_and_nothing_runs(tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    records = write_records(tmp_path / "in.jsonl", 10)
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    root = os.geteuid() == 0  # root writes where permissions say no: the folder is made immutable instead
    subprocess.run(["chattr", "+i", str(out)], check=True) if root else out.chmod(0o555)
    try:
        code, shown = in_terminal("run", notebook, "--records", records, "--out", out, "--run-id", "r",
                                  "--engine", "inprocess")
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True) if root else out.chmod(0o755)
    assert code == 1, shown
    assert shown.startswith(f"error: {out / 'r'}: ") and shown.count("\n") == 1, shown
    assert shown.endswith(f": --out {out} must be a folder this user can write; nothing was run\n"), shown
    assert not (out / "r").exists()


def test_an_out_folder_removed_mid_run_is_one_line(tmp_path):
    out = tmp_path / "runs"
    records = write_records(tmp_path / "in.jsonl", 2000)
    notebook = doing_first(tmp_path, f"shutil.rmtree({str(out)!r})")
    code, shown = in_terminal("run", notebook, "--records", records, "--out", out, "--run-id", "v",
                              "--engine", "inprocess", "--batch-size", 100, "--workers", 1)
    assert code == 1, shown
    assert len(errors(shown)) == 1 and not [word for word in NOISE if word in shown], shown
    assert errors(shown) == [f"error: {out / 'v'}: the run directory was removed while the run wrote it; "
                             "start the run again"], shown


@pytest.mark.parametrize("run_id", [" ", "\t", " padded"])
def test_a_blank_or_padded_run_id_is_a_usage_error(tmp_path, run_id):
    records = write_records(tmp_path / "in.jsonl", 1)
    code, shown = in_terminal("run", tmp_path, "--records", records, "--out", tmp_path / "runs", "--run-id", run_id)
    assert code == 2, shown
    assert errors(shown) == [f"error: --run-id {run_id!r}: a run id names a folder in --out, so it holds no / or \\, "
                             "is not blank, . or .., and has no space at either end"]
    assert not (tmp_path / "runs").exists()


def test_a_repeated_key_and_float_or_null_ids_are_rejected_with_exact_reasons(tmp_path):
    records = tmp_path / "in.jsonl"
    records.write_text('{"id": 5, "id": 6, "data": {"x": 1, "label": "a"}}\n'
                       '{"id": 4.0, "data": {"x": 1, "label": "a"}}\n'
                       '{"id": null, "data": {"x": 1, "label": "a"}}\n'
                       '{"id": 7, "data": {"x": 1, "label": "a"}}\n')
    notebook = write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS)
    code, shown = in_terminal("run", notebook, "--records", records, "--out", tmp_path / "runs", "--run-id", "k",
                              "--engine", "inprocess", "--max-error-rate", 1)
    assert code == 0, shown
    rejected = [json.loads(line) for line in (tmp_path / "runs" / "k" / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {"line": 1, "id": None, "reason": "the key 'id' appears twice in one object (JSON readers keep only the "
                                          "last): write each key once"},
        {"line": 2, "id": None, "reason": "id field 'id' must be a string or an integer, got float 4.0 (write 4, "
                                          "without the fraction)"},
        {"line": 3, "id": None, "reason": "id field 'id' is null; an id is a string or an integer"}]


MONGO_NOISE = ("$clusterTime", "signature", "Topology Description", "configured timeouts", "{'", "Traceback")


@pytest.mark.slow
def test_mongodb_refusing_the_credentials_is_one_plain_line(tmp_path):

    from servers import SecantusServer

    server = SecantusServer(tmp_path / "db").start()
    try:
        server.require_login("scorer", "right-password")
        records = write_records(tmp_path / "in.jsonl", 1)
        code, shown = in_terminal("run", write_notebook(tmp_path / "nb" / "tiny.ipynb", GOOD_CELLS), "--records",
                                  records, "--out", tmp_path / "runs", "--engine", "inprocess", "--mongo-uri",
                                  f"mongodb://scorer:WRONG@127.0.0.1:{server.port}/leads?authSource=admin")
    finally:
        server.stop()
    assert code == 1, shown
    assert shown.count("\n") == 1 and shown.startswith(
        f"error: MongoDB at mongodb://scorer:***@127.0.0.1:{server.port} refused the request: "), shown
    assert not [word for word in MONGO_NOISE if word in shown] and "WRONG" not in shown, shown


@pytest.mark.slow
def test_mongodb_dying_mid_run_is_one_plain_line(tmp_path):
    from servers import SecantusServer

    server = SecantusServer(tmp_path / "db").start()
    records = write_records(tmp_path / "in.jsonl", 2000)
    notebook = doing_first(tmp_path, "import time\ntime.sleep(3)")  # the server dies meanwhile
    run = subprocess.Popen([sys.executable, "-m", "mlsm_nb.cli", "run", str(notebook), "--records", str(records),
                            "--out", str(tmp_path / "runs"), "--run-id", "m", "--engine", "inprocess",
                            "--batch-size", "1000", "--workers", "1", "--no-progress", "--mongo-uri",
                            f"{server.uri}/leads"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "runs" / "m" / "manifest.json").is_file() and time.time() < deadline:
            time.sleep(0.05)
        server.kill()
        out, err = run.communicate(timeout=300)
    finally:
        server.stop()
        run.kill()
    assert run.returncode == 1, out + err
    stored = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(stored) == 1 and stored[0].startswith("error: results not all stored in MongoDB (leads.results): ")
    assert stored[0].endswith("; run again with --resume to store them"), stored
    assert not [word for word in MONGO_NOISE if word in out + err], out + err
    assert "run m: failed (inprocess engine)" in out
