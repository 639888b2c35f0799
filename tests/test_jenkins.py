"""The Jenkins pipeline, played end to end without a Jenkins server.

The test plays the data scientists (push notebooks to a bare repository on
`develop` and `main`) and Jenkins (run the ci/ scripts in the order the
Jenkinsfile calls them, in a fresh workspace, with Jenkins' variables set).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from conftest import NOTEBOOKS, ROOT

pytestmark = pytest.mark.slow


def pipeline_scripts() -> list[str]:
    """The ci/ scripts the Jenkinsfile's stages call, in order."""
    scripts = re.findall(r"""\bsh\s+['"](ci/[\w.-]+\.sh)['"]""", (ROOT / "Jenkinsfile").read_text())
    assert scripts, "no `sh 'ci/...'` steps found in the Jenkinsfile"
    return scripts


def git(cwd, *args) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ds", "GIT_AUTHOR_EMAIL": "ds@example.com",
           "GIT_COMMITTER_NAME": "ds", "GIT_COMMITTER_EMAIL": "ds@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def models_repo(tmp_path_factory):
    """A bare models repository with notebooks on main and develop (develop one commit ahead)."""
    base = tmp_path_factory.mktemp("git")
    origin = base / "models.git"
    git(base, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    work = base / "work"
    git(base, "clone", "--quiet", str(origin), str(work))
    (work / "notebooks").mkdir()
    for name in ("lead_rules.ipynb", "lead_rules_v2.ipynb"):
        shutil.copy(NOTEBOOKS / name, work / "notebooks" / name)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "lead rules v1 and v2")
    git(work, "push", "--quiet", "origin", "main")
    git(work, "checkout", "--quiet", "-b", "develop")
    (work / "README.md").write_text("models\n")
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "develop work")
    git(work, "push", "--quiet", "origin", "develop")
    return origin, work


def run_pipeline(tmp_path, origin, branch, build_number):
    """Jenkins: a fresh workspace, then every stage's script in order until one fails."""
    workspace = tmp_path / f"ws-{branch.replace('/', '-')}"
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for name in listed:  # the pipeline repository as Jenkins checks it out
        if (ROOT / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, workspace / name, follow_symlinks=False)
    env = {**os.environ, "WORKSPACE": str(workspace), "BRANCH_NAME": branch, "BUILD_NUMBER": str(build_number),
           "GIT_COMMIT": "0" * 40, "MODELS_REPO": f"file://{origin}", "MODELS_BRANCH": "",
           "MLSM_VENV": str(Path(sys.executable).parent.parent), "SAMPLE_SIZE": "60"}
    ran = []
    for script in pipeline_scripts():
        done = subprocess.run(["bash", script], cwd=workspace, env=env, capture_output=True, text=True)
        ran.append((script, done))
        if done.returncode != 0:
            break
    return workspace, ran


def test_pipeline_on_develop_forces_draft_and_main_keeps_status(tmp_path, models_repo):
    origin, _ = models_repo
    for branch, number in (("develop", 11), ("main", 12)):
        workspace, ran = run_pipeline(tmp_path, origin, branch, number)
        failed = [(s, d.stdout + d.stderr) for s, d in ran if d.returncode != 0]
        assert not failed, failed
        assert [s for s, _ in ran] == pipeline_scripts()
        build = workspace / "build"
        xml = JUnitXml.fromfile(str(build / "validate.xml"))
        cases = [case for suite in xml for case in suite]
        assert len(cases) == 10 and all(case.is_passed for case in cases)
        manifest = json.loads((build / "bundle" / "manifest.json").read_text())
        assert manifest["commit"] == git(origin, "rev-parse", branch)
        assert manifest["branch"] == branch and manifest["repository"] == f"file://{origin}"
        statuses = {(m["name"], m["version"]): m["status"] for m in manifest["models"]}
        assert all(m["git_commit"] for m in manifest["models"])
        if branch == "develop":
            assert set(statuses.values()) == {"draft"}
            assert "development branches are draft" in manifest["models"][0]["status_reason"]
        else:
            assert statuses == {("lead_rules", "1.0.0"): "active", ("lead_rules", "2.0.0"): "draft"}
        for run in (f"notebooks-{number}", f"bundle-{number}"):
            results = list((build / "runs" / run / "results").glob("*.jsonl"))
            assert results and sum(len(p.read_text().splitlines()) for p in results) == 60
            first = json.loads(results[0].read_text().splitlines()[0])
            assert first["results"]["lead_rules"]["1.0.0"]["_status"] == statuses["lead_rules", "1.0.0"]


def test_a_broken_notebook_stops_the_pipeline_at_validate(tmp_path, models_repo):
    origin, work = models_repo
    git(work, "checkout", "--quiet", "develop")
    broken = work / "notebooks" / "lead_rules.ipynb"
    nb = json.loads(broken.read_text())
    for cell in nb["cells"]:
        if "examples" in cell["metadata"].get("tags", []):
            cell["source"] = "".join(cell["source"]).replace('"points": 100', '"points": 99')
    broken.write_text(json.dumps(nb))
    git(work, "commit", "--quiet", "-am", "break an example")
    git(work, "push", "--quiet", "origin", "develop")
    workspace, ran = run_pipeline(tmp_path, origin, "develop", 13)
    script, done = ran[-1]
    assert script == "ci/validate.sh" and done.returncode != 0
    assert "lead_rules.ipynb: examples:" in done.stderr
    assert "ci: stage validate failed" in done.stderr
    xml = JUnitXml.fromfile(str(workspace / "build" / "validate.xml"))
    assert any(not case.is_passed for suite in xml for case in suite if case.name == "examples")
    assert not (workspace / "build" / "bundle").exists()


def test_jenkinsfile_passes_npm_groovy_lint():
    lint = ROOT / ".tools" / "node_modules" / ".bin" / "npm-groovy-lint"
    assert lint.exists(), "ci/tools.sh installs npm-groovy-lint into .tools/"
    done = subprocess.run([str(lint), "--noserver", "--failon", "error", "--output", "json", str(ROOT / "Jenkinsfile")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["summary"]["totalFoundErrorNumber"] == 0
