import json
import math
import subprocess
import time

import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell
from mlsm_nb import Model, SummaryModel, run_models_all
from mlsm_nb.cli import main
from mlsm_nb.core.fields import generate_inputs
from mlsm_nb.exceptions import BundleError, NotebookError
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook import extract_bundle, load_bundle, load_notebook
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.notebook.parity import score_in_kernel

EXAMPLES = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_load_notebook_runs_only_production_cells_and_records_provenance(make_notebook):
    path = make_notebook(cells=GOOD_CELLS + [(None, "raise SystemExit('production must never run this')")])
    model = load_notebook(path)
    assert isinstance(model, Model) and model.key == ("tiny", "1.0") and model.status == "active"
    assert model.execute({"x": 3, "label": "abc"}, {})["tiny"]["1.0"] == {"score": 6, "n": 3, "_status": "active"}
    prov = model.provenance
    assert prov["source"] == str(path) and len(prov["sha256"]) == 64 and "extracted_at" in prov
    assert "git_commit" not in prov  # not in a git repository


def test_provenance_hash_follows_production_cells_only(make_notebook):
    base = load_notebook(make_notebook("a.ipynb")).provenance["sha256"]
    authoring = GOOD_CELLS + [(None, "x = 'more exploration'")]
    assert load_notebook(make_notebook("b.ipynb", authoring)).provenance["sha256"] == base
    changed = replace_cell(GOOD_CELLS, "setup", "FACTOR = 3")
    assert load_notebook(make_notebook("c.ipynb", changed)).provenance["sha256"] != base


def test_git_commit_of_the_notebook_file(tmp_path, make_notebook):
    path = make_notebook()
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", path.name)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "add")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    prov = load_notebook(path).provenance
    assert prov["git_commit"] == head and prov["git_dirty"] is False


def test_score_cell_raising_on_import_names_the_cell_and_line(make_notebook):
    cells = replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    return {}\n\nTABLE = {}['missing']")
    with pytest.raises(NotebookError, match=r"tiny.ipynb:cell 5 \[score\]: raised KeyError at line 4"):
        load_notebook(make_notebook(cells=cells))


def test_setup_runs_in_the_notebook_folder(tmp_path, make_notebook):
    (tmp_path / "weights.json").write_text('{"factor": 5}')
    cells = replace_cell(GOOD_CELLS, "setup", "import json\nFACTOR = json.load(open('weights.json'))['factor']")
    model = load_notebook(make_notebook(cells=cells))
    assert model.execute({"x": 2, "label": ""}, {})["tiny"]["1.0"]["score"] == 10


def test_example_notebooks_load_as_models_and_summary():
    loaded = {m.key: m for m in map(load_notebook, EXAMPLES)}
    assert set(loaded) == {("lead_rules", "1.0.0"), ("lead_rules", "2.0.0"), ("lead_lr", "1.0.0"),
                           ("champion", "1.0.0")}
    assert isinstance(loaded["champion", "1.0.0"], SummaryModel)
    assert loaded["lead_lr", "1.0.0"].score_frame is not None


def test_two_versions_of_a_model_keep_separate_results():
    models = [load_notebook(NOTEBOOKS / "lead_rules.ipynb"), load_notebook(NOTEBOOKS / "lead_rules_v2.ipynb")]
    out = run_models_all(models, generate_leads(200, seed=3))
    for record in out:
        both = record["results"]["lead_rules"]
        assert set(both) == {"1.0.0", "2.0.0"}
        assert both["1.0.0"]["_status"] == "active" and both["2.0.0"]["_status"] == "draft"
    assert any(r["results"]["lead_rules"]["1.0.0"]["score"] != r["results"]["lead_rules"]["2.0.0"]["score"]
               for r in out)


def _cases(model, spec):
    leads = [r["data"] for r in generate_leads(40, seed=11)]
    cases = [{"data": d, "results": {}} for d in leads + generate_inputs(model.specs, random_count=20, seed=5)]
    if spec.kind == "summary":
        cases = [{"data": {}, "results": e["results"]} for e in spec.examples]
        cases += [{"data": {}, "results": {m["name"]: {m["version"]: {"score": s / 7}} for m in spec.models}}
                  for s in range(8)]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_extracted_model_scores_exactly_as_the_notebook_in_a_kernel(path):
    spec = lint_notebook(path)
    model = load_notebook(path)
    cases = _cases(model, spec)
    in_kernel = score_in_kernel(spec, cases)
    extracted = [model.fcn(c["data"], c["results"]) for c in cases]
    assert json.loads(json.dumps(extracted)) == in_kernel


def test_extract_writes_a_bundle_that_loads_and_scores_the_same(tmp_path):
    result = CliRunner().invoke(main, ["extract", str(NOTEBOOKS), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    entries = {(e["name"], e["version"]): e for e in manifest["models"]}
    lr = entries["lead_lr", "1.0.0"]
    assert lr["kind"] == "model" and lr["status"] == "active" and lr["has_score_frame"] is True
    assert len(lr["sha256"]) == 64 and lr["source"].endswith("lead_lr.ipynb")
    assert (tmp_path / "bundle" / "lead_lr-1.0.0" / "lead_lr.coef.json").is_file()
    module = (tmp_path / "bundle" / lr["module"]).read_text()
    assert "Provenance:" in module and "# --- cell" in module and "Newton-Raphson" not in module

    bundle = load_bundle(tmp_path / "bundle")
    assert [m.kind for m in bundle][-1] == "summary"
    notebooks = [load_notebook(p) for p in EXAMPLES]
    notebooks.sort(key=lambda m: m.kind == "summary")
    leads = list(generate_leads(300, seed=9))
    from_bundle = run_models_all(bundle, [dict(r) for r in leads])
    from_notebooks = run_models_all(notebooks, [dict(r) for r in leads])
    assert [r["results"] for r in from_bundle] == [r["results"] for r in from_notebooks]
    assert all(not math.isnan(r["results"]["champion"]["1.0.0"]["score"]) for r in from_bundle)


def test_load_bundle_refuses_a_changed_module(tmp_path):
    extract_bundle([NOTEBOOKS / "lead_rules.ipynb"], tmp_path / "b")
    module = tmp_path / "b" / "lead_rules-1.0.0" / "model.py"
    module.write_text(module.read_text().replace("points += 20", "points += 99"))
    with pytest.raises(BundleError, match="changed since extraction"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no readable manifest.json"):
        load_bundle(tmp_path)


def test_extract_is_all_or_nothing(tmp_path, make_notebook):
    good = make_notebook("good.ipynb")
    bad = make_notebook("bad.ipynb", replace_cell(GOOD_CELLS, "setup", "1 / 0"))
    out = tmp_path / "out" / "bundle"
    result = CliRunner().invoke(main, ["extract", str(good), str(bad), "--out", str(out)])
    assert result.exit_code == 1
    assert "bad.ipynb:cell 3 [setup]: raised ZeroDivisionError at line 1" in result.output
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no staging folder left behind


def test_summary_needing_a_model_not_given(tmp_path):
    result = CliRunner().invoke(main, ["extract", str(NOTEBOOKS / "champion.ipynb"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert ("champion.ipynb:cell 3 [models]: summary needs lead_rules 1.0.0, lead_lr 1.0.0, not among the notebooks "
            "given; add their notebooks to the paths") in result.output
    assert not (tmp_path / "b").exists()


def test_summary_needing_another_version_of_a_model_given(tmp_path):
    result = CliRunner().invoke(main, ["extract", str(NOTEBOOKS / "champion.ipynb"), str(NOTEBOOKS / "lead_lr.ipynb"),
                                       str(NOTEBOOKS / "lead_rules_v2.ipynb"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert ("champion.ipynb:cell 3 [models]: summary needs lead_rules 1.0.0, not among the notebooks given; the "
            "notebooks given have lead_rules 2.0.0: change the version in `models`, or add the notebook of that "
            "version") in result.output


@pytest.mark.parametrize("manifest", ["{}", "[]", '{"models": "tiny"}', '{"models": []}'])
def test_a_manifest_that_lists_no_models_is_named(tmp_path, manifest):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(BundleError, match=r"manifest.json: lists no models; extract the bundle again"):
        load_bundle(tmp_path)


def test_extract_refuses_a_non_empty_output(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(BundleError, match="not empty"):
        extract_bundle([NOTEBOOKS], tmp_path / "b")


def test_extract_ends_a_hanging_cell_at_the_timeout(tmp_path, make_notebook):
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "setup", "FACTOR = 2\nwhile True:\n    pass"))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["extract", str(path), "--out", str(tmp_path / "b"), "--timeout", "1"])
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {path}:cell 3 [setup]: did not finish within 1 s (a loop that never "
                                     "ends? a slow download?); give it longer with --timeout")
    assert not (tmp_path / "b").exists()


def test_extract_never_runs_a_non_literal_fields_cell(tmp_path, make_notebook):
    marker = tmp_path / "ran"
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "fields",
                                            f'fields = {{"x": "int"}}\nopen({str(marker)!r}, "w").close()'))
    result = CliRunner().invoke(main, ["extract", str(path), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "only `fields = {...}` (a literal dict) belong" in result.output
    with pytest.raises(NotebookError):
        load_notebook(path)
    assert not marker.exists()


def test_the_public_names_of_the_split_extract_module_come_from_the_notebook_front_door():
    """extract.py was split by job (execute, provenance, dependencies, extract, bundle); its public names stay
    importable from mlsm_nb.notebook, each from the module that does that job."""
    import mlsm_nb.notebook as notebook

    where = {"load_notebook": "execute", "execute_production_cells": "execute", "working_directory": "execute",
             "time_limit": "execute", "git_info": "provenance", "check_dependencies": "dependencies",
             "missing_models": "dependencies", "extract_bundle": "extract", "bundle_entries": "bundle",
             "load_bundle": "bundle", "declarations": "contract"}
    for name, module in where.items():
        assert name in notebook.__all__
        assert getattr(notebook, name).__module__ == f"mlsm_nb.notebook.{module}"
    assert notebook.MANIFEST == "manifest.json"
