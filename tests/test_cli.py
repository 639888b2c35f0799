import subprocess
import sys

from click.testing import CliRunner

from mlsm_nb import __version__
from mlsm_nb.cli import main


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"mlsm-nb, version {__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "scoring models as notebooks" in result.output


def test_console_script_is_installed():
    script = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "--version"], capture_output=True, text=True)
    assert script.returncode == 0 and __version__ in script.stdout
