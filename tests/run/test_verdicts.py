"""Run verdicts, exit codes, parameters and progress lines (in-process engine: no kernels, fast)."""

import json

import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, replace_cell, write_records
from mlsm_nb.cli import main
from mlsm_nb.exceptions import ConfigError
from mlsm_nb.run.engines import get_engine
from mlsm_nb.run.orchestrate import run_notebooks
from mlsm_nb.run.settings import RunSettings
from mlsm_nb.store.manifest import load_manifest
from mlsm_nb.store.rundir import read_results


def records(tmp_path, n=20):
    path = tmp_path / "records.jsonl"
    write_records(path, n)
    return path


def run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def manifest_of(run_dir):
    return load_manifest(run_dir / "manifest.json")


def failing_on(make_notebook, condition, name="flaky"):
    cells = replace_cell(GOOD_CELLS, "version", f'name = "{name}"\nversion = "1"\nstatus = "draft"')
    cells = replace_cell(cells, "score", "def score(data, results):\n"
                                         f"    if {condition}:\n"
                                         "        raise ValueError('no score for ' + str(data['x']))\n"
                                         "    return {'score': data['x']}")
    cells = replace_cell(cells, "examples", None)
    return make_notebook(f"{name}.ipynb", cells)


def test_a_model_failing_on_every_record_fails_the_run(tmp_path, make_notebook):
    good, broken = make_notebook(), failing_on(make_notebook, "True", "broken")
    result = run(good, broken, "--records", records(tmp_path), "--out", tmp_path, "--run-id", "a",
                 "--engine", "inprocess")
    assert result.exit_code == 1, result.output
    assert "run a: failed (inprocess engine)" in result.output
    assert "error: broken@1: 100.0% of records have errors (over --max-error-rate 0.1)" in result.output
    assert "    id 0: score_raised: ValueError at cell 5 [score], line 3: no score for 0" in result.output
    manifest = manifest_of(tmp_path / "a")
    assert manifest.status == "failed"
    assert manifest.verdict.models_over == ["broken@1"] and manifest.verdict.max_error_rate == 0.1
    stats = manifest.models["broken@1"]
    assert stats["records"] == 20 and stats["errors"] == {"score_raised": 20} and stats["error_rate"] == 1.0
    assert {"records", "errors", "scored", "score_min", "score_max",
            "score_mean"} <= set(manifest.models["tiny@1.0"])


def test_errors_within_the_threshold_succeed_with_errors_and_are_listed(tmp_path, make_notebook):
    flaky = failing_on(make_notebook, "data['x'] == 3")
    result = run(flaky, "--records", records(tmp_path), "--out", tmp_path, "--run-id", "w", "--engine", "inprocess")
    assert result.exit_code == 0, result.output
    assert "run w: succeeded with errors (inprocess engine)" in result.output
    assert "warning: flaky@1: 5.0% of records have errors (within --max-error-rate 0.1)" in result.output
    assert "    id 3: score_raised: ValueError at cell 5 [score], line 3: no score for 3" in result.output
    manifest = manifest_of(tmp_path / "w")
    assert manifest.status == "succeeded with errors" and manifest.verdict.models_with_errors == ["flaky@1"]
    assert manifest.models["flaky@1"]["error_rate"] == 0.05
    strict = run(flaky, "--records", records(tmp_path), "--out", tmp_path, "--run-id", "s", "--engine", "inprocess",
                 "--max-error-rate", 0)
    assert strict.exit_code == 1 and "run s: failed" in strict.output


def test_a_clean_run_succeeds(tmp_path, make_notebook):
    result = run(make_notebook(), "--records", records(tmp_path), "--out", tmp_path, "--run-id", "c",
                 "--engine", "inprocess")
    assert result.exit_code == 0 and "run c: succeeded (inprocess engine)" in result.output
    assert manifest_of(tmp_path / "c").verdict.models_with_errors == []


def test_the_summary_says_how_many_records_have_no_numeric_score(tmp_path, make_notebook):
    text = make_notebook("text.ipynb", replace_cell(replace_cell(GOOD_CELLS, "score", (
        "def score(data, results):\n    return {'score': 'high' if data['x'] > 14 else data['x'] / 20}")),
        "examples", None))
    result = run(text, "--records", records(tmp_path), "--out", tmp_path, "--run-id", "t", "--engine", "inprocess")
    assert result.exit_code == 0, result.output
    assert ("tiny@1.0                 20 records, score mean 0.350 (min 0.000, max 0.700) of 15 numeric scores; "
            "5 records have none\n") in result.output
    clean = run(make_notebook(), "--records", records(tmp_path), "--out", tmp_path, "--run-id", "c",
                "--engine", "inprocess")
    assert "tiny@1.0                 20 records, score mean 19.000 (min 0.000, max 38.000)\n" in clean.output


def test_a_records_file_that_breaks_off_fails_the_run_however_few_lines_it_costs(tmp_path, make_notebook):
    import gzip

    whole = gzip.compress(b"".join(json.dumps({"id": i, "data": {"x": i % 20, "label": "ab" * 20}}).encode() + b"\n"
                                   for i in range(4000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    result = run(make_notebook(), "--records", path, "--out", tmp_path, "--run-id", "g", "--engine", "inprocess")
    manifest = manifest_of(tmp_path / "g")
    assert 0 < manifest.input.records < 4000 and manifest.input.rejected == 1  # 1 line: within 10 %
    assert result.exit_code == 1 and manifest.status == "failed", result.output
    line = manifest.input.records + 1
    assert (f"error: {path}: line {line}: the compressed file is cut short or corrupt here") in result.output
    assert "nothing after this line could be read: replace the file and run again\n" in result.output
    assert manifest.verdict.input_cut_short.startswith(f"line {line}: ")
    from bs4 import BeautifulSoup

    from mlsm_nb.report.site import write_report

    page = BeautifulSoup(write_report(tmp_path / "g").read_text(), "html.parser")
    verdict = page.select_one("#verdict-cut-short").text
    assert verdict.startswith(f"Failed: the records file breaks off at line {line}: ")


def test_every_record_rejected_fails_the_run(tmp_path, make_notebook):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"no_id": 1}\n{"id": 2}\n')
    result = run(make_notebook(), "--records", path, "--out", tmp_path, "--run-id", "r", "--engine", "inprocess")
    assert result.exit_code == 1
    assert "error: no record could be scored (every input line was rejected)" in result.output
    assert manifest_of(tmp_path / "r").status == "failed"


def test_usage_errors_exit_2(tmp_path, make_notebook):
    assert run(make_notebook()).exit_code == 2  # no --records
    assert run(make_notebook(), "--records", records(tmp_path), "--max-error-rate", 2).exit_code == 2
    assert run(make_notebook(), "--records", records(tmp_path), "--param", "no equals sign").exit_code == 2
    # Settings that cannot work, found by the library, are usage errors too: one line, exit 2, nothing written.
    out = tmp_path / "runs"
    for options, message in [
            (["--resume"], "error: --resume needs the --run-id of the run to finish"),
            (["--run-id", "../elsewhere"], "error: --run-id '../elsewhere': a run id names a folder in --out"),
            (["--run-id", "a/b"], "error: --run-id 'a/b': a run id names a folder in --out"),
            (["--run-id", str(tmp_path / "abs")], "a run id names a folder in --out"),
            (["--timeout", "inf"], "error: --timeout must be a number of seconds above 0, got inf"),
            (["--timeout", "nan"], "error: --timeout must be a number of seconds above 0, got nan"),
            (["--timeout", "-5"], "error: --timeout must be a number of seconds above 0, got -5.0"),
            (["--timeout", "0"], "error: --timeout must be a number of seconds above 0, got 0.0"),
            (["--record-timeout", "-1"], "error: --record-timeout must be a number of seconds, 0 for no limit, "
                                         "got -1.0"),
            (["--record-timeout", "nan"], "error: --record-timeout must be a number of seconds, 0 for no limit, "
                                          "got nan"),
            (["--bundle", str(tmp_path), "--engine", "papermill"], "error: --bundle scores in-process")]:
        result = run(make_notebook(), "--records", records(tmp_path), "--out", out, *options)
        assert result.exit_code == 2 and message in result.output, (options, result.output)
        assert len(result.output.splitlines()) == 1, result.output
    assert not out.exists() and not (tmp_path / "elsewhere").exists() and not (tmp_path / "abs").exists()


def with_parameters(make_notebook):
    return make_notebook("params.ipynb", [("parameters", "threshold = 0.5\nlabel_weight: float = 1.0")] + GOOD_CELLS)


def test_unknown_parameter_is_refused_naming_the_known_ones(tmp_path, make_notebook):
    result = run(with_parameters(make_notebook), "--records", records(tmp_path), "--out", tmp_path,
                 "--engine", "inprocess", "--param", "treshold=0.7")
    assert result.exit_code == 2
    assert ("error: unknown parameter treshold: no notebook's `parameters` cell defines it; "
            "known parameters: label_weight, threshold") in result.output
    assert not list(tmp_path.glob("*/manifest.json"))


def test_list_params_shows_names_and_defaults(make_notebook):
    path = with_parameters(make_notebook)
    result = run(path, "--list-params")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"threshold = 0.5    ({path})", f"label_weight = 1.0    ({path})"]


@pytest.mark.parametrize("change, named", [
    (["--param", "threshold=0.1"], "parameters differs"),
    (["--batch-size", "7"], "batch_size differs"),
    (["--id-field", "key"], "id_field differs"),
    (["--branch", "feature/x"], "branch differs"),
])
def test_resume_with_a_different_setting_is_refused(tmp_path, make_notebook, change, named):
    args = [with_parameters(make_notebook), "--records", records(tmp_path), "--out", tmp_path, "--run-id", "r",
            "--engine", "inprocess", "--batch-size", 5]
    assert run(*args, "--param", "threshold=0.7").exit_code == 0
    index = args.index("--batch-size")
    base = args[:index] + args[index + 2:] if "--batch-size" in change else args
    result = run(*base, "--param", "threshold=0.7", *change, "--resume") if change[0] != "--param" \
        else run(*base, *change, "--resume")
    assert result.exit_code == 1 and f"run r: {named} from the run's" in result.output, result.output
    assert run(*args, "--param", "threshold=0.7", "--resume").exit_code == 0


def test_progress_lines_when_not_a_terminal(tmp_path, make_notebook):
    result = CliRunner().invoke(main, ["run", str(make_notebook()), "--records",
                                                       str(records(tmp_path)), "--out", str(tmp_path),
                                                       "--engine", "inprocess", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    lines = sorted(line.split(", 0 errors, ")[0] for line in result.stderr.splitlines())
    assert [line[:5] for line in lines] == ["[1/3]", "[2/3]", "[3/3]"]
    assert sorted(line[6:] for line in lines) == ["tiny@1.0 batch 0: 8 records", "tiny@1.0 batch 1: 8 records",
                                                  "tiny@1.0 batch 2: 4 records"]


@pytest.mark.parametrize("engine", ["inprocess", pytest.param("papermill", marks=pytest.mark.slow)])
def test_progress_after_a_resume_counts_what_was_done_before(tmp_path, make_notebook, engine):
    args = ["run", str(make_notebook()), "--records", str(records(tmp_path)), "--out", str(tmp_path), "--run-id", "p",
            "--engine", engine, "--batch-size", "8"]
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "p" / "results" / "batch-00001.jsonl").unlink()  # as if killed before batch 1 was merged
    if engine == "papermill":
        (tmp_path / "p" / "outputs" / "tiny@1.0" / "batch-00001.jsonl").unlink()
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    # Batches 0 and 2 count as done; the one line is for batch 1, and it ends the count.
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["[3/3] tiny@1.0 batch 1"]
    (tmp_path / "p" / "results" / "batch-00001.jsonl").unlink()
    if engine == "papermill":
        (tmp_path / "p" / "outputs" / "tiny@1.0" / "batch-00001.jsonl").unlink()
    bar = CliRunner().invoke(main, [*args, "--resume", "--progress"])
    assert bar.exit_code == 0, bar.output
    # The bar's records are the run's, not only those of the batch scored again (8).
    assert bar.stderr.rsplit("\r", 1)[-1].startswith("executions: 100%") and "3/3" in bar.stderr
    assert "20 records, 0 errors" in bar.stderr.rsplit("\r", 1)[-1], bar.stderr


def test_cli_and_library_share_defaults():
    run_command = main.commands["run"]
    defaults = {p.name: p.default for p in run_command.params}
    for name in ("out", "batch_size", "id_field", "timeout", "engine", "max_error_rate"):
        assert defaults[name] == RunSettings.default(name), name


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown engine 'spark'; known engines: inprocess, papermill"):
        get_engine("spark")
    with pytest.raises(ConfigError, match="known engines: inprocess, papermill"):
        RunSettings(engine="spark")
    for wrong in (dict(engine="inprocess"), dict(scheduler="local:1")):
        with pytest.raises(ConfigError, match="--warm-kernels keeps papermill's kernels in this process"):
            RunSettings(warm_kernels=True, **wrong)


def test_results_keep_id_types(tmp_path, make_notebook):
    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": 1, "data": {"x": 1, "label": "a"}}\n{"id": "1", "data": {"x": 2, "label": "a"}}\n')
    assert run(make_notebook(), "--records", path, "--out", tmp_path, "--run-id", "i",
               "--engine", "inprocess").exit_code == 0
    assert [d["id"] for d in read_results(tmp_path / "i")] == [1, "1"]


def test_the_summary_marks_a_model_a_develop_bundle_holds_as_draft(tmp_path, make_notebook):
    from mlsm_nb.notebook.extract import extract_bundle

    notebook = make_notebook()  # tiny 1.0, active
    extract_bundle([notebook], tmp_path / "bundle", status_override="draft", status_reason="branch develop")
    result = run(notebook, "--records", records(tmp_path), "--out", tmp_path, "--run-id", "b", "--engine",
                 "inprocess", "--bundle", tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    assert "\n  tiny@1.0 (draft)         20 records, score mean" in result.output
    assert manifest_of(tmp_path / "b").notebooks[0].status == "draft"
    assert {d["results"]["tiny"]["1.0"]["_status"] for d in read_results(tmp_path / "b")} == {"draft"}


def test_bundle_refuses_parameters_it_cannot_apply(tmp_path, make_notebook):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    result = run(with_parameters(make_notebook), "--records", records(tmp_path), "--engine", "inprocess",
                 "--bundle", bundle, "--param", "threshold=0.7")
    assert result.exit_code == 2
    assert "--bundle scores with the models as extracted, so --param threshold would not apply" in result.output


def test_an_engine_is_registered_by_name_and_checked(tmp_path, make_notebook):
    from mlsm_nb.run import engines

    class Constant(engines.FileEngine):
        """A kernel-free engine: every record scores 1."""

        def prepare(self, executor, specs):
            pass

        def kept(self, executor, key, batch):
            return {"engine": "constant"}

        def execute(self, executor, key, batch):
            run = executor.run
            lines = run.batch_path(batch).read_text().count("\n")
            run.output_path(key, batch).write_text('{"score": 1}\n' * lines)

    with pytest.raises(ConfigError, match="engine 'half' has no kept, execute method"):
        engines.register("half", type("Half", (engines.FileEngine,), {"prepare": lambda self, e, s: None})())
    engines.register("constant", Constant())
    try:
        manifest = run_notebooks([make_notebook()], records(tmp_path, 5), out=tmp_path, run_id="k",
                                 engine="constant", batch_size=2)
    finally:
        engines.unregister("constant")
    assert manifest.status == "succeeded" and manifest.executions["tiny@1.0"][0].extra["engine"] == "constant"
    assert [d["results"]["tiny"]["1.0"] for d in read_results(tmp_path / "k")] == [{"score": 1}] * 5
