import subprocess
import sys

from click.testing import CliRunner

from mlsm_nb import __version__
from mlsm_nb.cli import main
from mlsm_nb.exceptions import MlsmError


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"mlsm-nb, version {__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "scoring models as notebooks" in result.output


def test_console_script_is_installed():
    script = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "--version"], capture_output=True, text=True)
    assert script.returncode == 0 and __version__ in script.stdout


def test_every_command_the_design_names_exists():
    binding = {"new", "lint", "validate", "extract", "run", "report", "serve", "trace", "replay", "outcomes", "approve",
               "monitor"}
    assert binding <= set(main.commands)


def test_a_library_error_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(main, ["replay", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert str(tmp_path / "manifest.json") in result.output and "Traceback" not in result.output


def test_debug_lets_the_error_through_with_its_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "replay", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, MlsmError)


def test_settings_that_cannot_work_are_a_usage_error_exit_2_and_write_nothing(tmp_path):
    records = tmp_path / "r.jsonl"
    records.write_text('{"id": 1, "data": {}}\n')
    result = CliRunner().invoke(main, ["run", "notebooks", "--records", str(records), "--timeout", "0",
                                       "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "--timeout" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "runs").exists()
