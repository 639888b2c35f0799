"""run.execution: what a local run's processes load, and record about where they ran."""

import json
import subprocess
import sys
import textwrap

from conftest import NOTEBOOKS


def test_a_local_run_imports_neither_dask_nor_pymongo(tmp_path):
    # Each costs a process a tenth to half a second of CPU; a run without --scheduler or MongoDB has no use for them.
    code = textwrap.dedent(f"""
        import json, sys
        from mlsm_nb.leads import save_leads
        from mlsm_nb.run.execution import worker_name
        from mlsm_nb.run.orchestrate import run_notebooks
        save_leads({str(tmp_path / "leads.jsonl")!r}, 30, seed=2)
        manifest = run_notebooks([{str(NOTEBOOKS)!r}], {str(tmp_path / "leads.jsonl")!r}, engine="inprocess",
                                 out={str(tmp_path / "runs")!r}, run_id="r")
        print(json.dumps({{"status": manifest.status, "worker": worker_name(),
                          "loaded": sorted({{"distributed", "pymongo"}} & set(sys.modules))}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"status": "succeeded", "worker": "local", "loaded": []}


def test_an_execution_counts_errors_from_its_entries_not_its_bytes(tmp_path):
    from mlsm_nb.run.execution import _output_facts

    output = tmp_path / "out.jsonl"
    lines = ['{"_error": "x missing", "_error_kind": "missing_field"}',
             '{"score": 1, "detail": {"_error_kind": "a key the model returned, inside a value"}}',
             '{"score": 2, "note": "\\"_error_kind\\": in a string"}'] * 20_000  # about 2 MiB: many chunks
    output.write_text("\n".join(lines) + "\n")
    facts = _output_facts(output)
    assert (facts["records"], facts["errors"]) == (60_000, 20_000)
