"""A fresh machine installs what the tests last passed with: every Python package at its pin."""

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "ci" / "requirements.lock"


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_every_dependency_of_the_package_and_its_extras_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("dev", "dask"):
        wanted += project["optional-dependencies"][extra]
    missing = [r for r in wanted if canonicalize_name(Requirement(r).name) not in _pins()]
    assert missing == []
    assert {"pip", "setuptools"} <= set(_pins())  # the installer and the build backend too


def test_the_environment_the_tests_run_in_has_the_pinned_versions():
    drift = {}
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-guarded pin for another platform
        if installed != version:
            drift[name] = (installed, version)
    assert drift == {}, "ci/setup.sh did not install the pinned versions (installed, pinned)"


def test_setup_installs_with_the_lock_and_reinstalls_when_it_changes():
    setup = (ROOT / "ci" / "setup.sh").read_text()
    assert 'PIP_CONSTRAINT="$PWD/ci/requirements.lock"' in setup
    assert "cat pyproject.toml ci/requirements.lock | sha256sum" in setup


def test_npm_tools_are_pinned_exactly_and_installed_from_the_lock():
    package = json.loads((ROOT / "ci" / "npm" / "package.json").read_text())
    lock = json.loads((ROOT / "ci" / "npm" / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is a range"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert "npm ci --prefix .tools" in (ROOT / "ci" / "tools.sh").read_text()
