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

from conftest import NOTEBOOKS, ROOT, git

JENKINSFILE = (ROOT / "Jenkinsfile").read_text()
STAGES, POST = JENKINSFILE.split("\n    stages {", 1)[1].split("\n    post {", 1)
SH_STEP = r"""\bsh\s+['"](ci/[\w.-]+\.sh)['"]"""


def pipeline_scripts(section: str = STAGES) -> list[str]:
    """The ci/ scripts the Jenkinsfile's stages (or its post section) call, in order."""
    scripts = re.findall(SH_STEP, section)
    assert scripts, "no `sh 'ci/...'` steps found in the Jenkinsfile"
    return scripts


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


def run_pipeline(tmp_path, origin, branch, build_number, **parameters):
    """Jenkins: a fresh workspace, then every stage's script in order until one fails (`parameters`: build
    parameters set)."""
    workspace = tmp_path / f"ws-{branch.replace('/', '-')}"
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for name in listed:  # the pipeline repository as Jenkins checks it out
        if (ROOT / name).is_file() or (ROOT / name).is_symlink():  # mlsm_nb/notebook/templates is a link
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, workspace / name, follow_symlinks=False)
    env = {**os.environ, "WORKSPACE": str(workspace), "BRANCH_NAME": branch, "BUILD_NUMBER": str(build_number),
           "GIT_COMMIT": "0" * 40, "MODELS_REPO": f"file://{origin}", "MODELS_BRANCH": "",
           "MLSM_VENV": str(Path(sys.executable).parent.parent), "SAMPLE_SIZE": "60", **parameters}
    ran = []
    for script in pipeline_scripts():
        done = subprocess.run(["bash", script], cwd=workspace, env=env, capture_output=True, text=True)
        ran.append((script, done))
        if done.returncode != 0:
            break
    for script in pipeline_scripts(POST):  # post { always }: runs whatever happened
        done = subprocess.run(["bash", script], cwd=workspace, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return workspace, ran


@pytest.mark.slow
def test_pipeline_on_develop_forces_draft_and_main_keeps_status(tmp_path, models_repo):
    origin, _ = models_repo
    for branch, number in (("develop", 11), ("main", 12)):
        workspace, ran = run_pipeline(tmp_path, origin, branch, number)
        failed = [(s, d.stdout + d.stderr) for s, d in ran if d.returncode != 0]
        assert not failed, failed
        assert [s for s, _ in ran] == pipeline_scripts()
        report = (workspace / "build" / "report" / "index.html").read_text()
        assert f"notebooks-{number}" in report and "Compared with run" in report
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_jenkinsfile_passes_npm_groovy_lint():
    lint = ROOT / ".tools" / "node_modules" / ".bin" / "npm-groovy-lint"
    assert lint.exists(), "ci/tools.sh installs npm-groovy-lint into .tools/"
    done = subprocess.run([str(lint), "--noserver", "--failon", "error", "--output", "json", str(ROOT / "Jenkinsfile")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["summary"]["totalFoundErrorNumber"] == 0


@pytest.mark.slow
def test_a_model_that_fails_every_record_fails_the_sample_stage(tmp_path, models_repo):
    """Needs the run verdicts (mlsm-nb run exits 1 when a model fails on every record) and the
    per-execution log lines of `mlsm-nb run`."""
    origin, work = models_repo
    git(work, "checkout", "--quiet", "-B", "feature/segment", "main")
    nb = json.loads((NOTEBOOKS / "lead_rules.ipynb").read_text())
    for cell in nb["cells"]:  # valid, its examples pass, but the team's sample records have no crm_segment
        tags = cell["metadata"].get("tags", [])
        source = "".join(cell["source"])
        if "version" in tags:
            source = source.replace('"lead_rules"', '"lead_segment"')
        elif "fields" in tags:
            source = source.replace("fields = {", 'fields = {\n    "crm_segment": "str",', 1)
        elif "examples" in tags:
            source = source.replace('"data": {', '"data": {"crm_segment": "smb", ')
        cell["source"] = source
    (work / "notebooks" / "lead_segment.ipynb").write_text(json.dumps(nb))
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "segment model")
    git(work, "push", "--quiet", "origin", "feature/segment")
    from mlsm_nb.leads import save_leads

    records = save_leads(tmp_path / "team-records.jsonl", 60)
    workspace, ran = run_pipeline(tmp_path, origin, "feature/segment", 14, SAMPLE_RECORDS=str(records))
    script, done = ran[-1]
    log = done.stdout + done.stderr
    assert script == "ci/sample-run.sh" and done.returncode != 0, [(s, d.returncode) for s, d in ran]
    assert "lead_segment@1.0.0" in done.stderr and "ci: stage sample-run failed" in done.stderr
    # Progress in the log: one line per finished execution (3 notebooks, 1 batch, 2 runs).
    assert len([line for line in log.splitlines() if "batch" in line and "@" in line]) >= 6, log
    report = (workspace / "build" / "report" / "index.html").read_text()
    assert "lead_segment@1.0.0" in report and 'id="verdict"' in report


def test_jenkinsfile_binds_credentials_and_publishes_the_report():
    assert re.search(r"withCredentials\(modelsRepoCredentials\(\)\)\s*\{\s*sh 'ci/checkout-models.sh'", STAGES)
    assert re.search(r"withCredentials\(mongoCredentials\(\)\)\s*\{\s*sh 'ci/extract.sh'", STAGES)
    assert "string(credentialsId: id, variable: 'MLSM_MONGO_URI')" in JENKINSFILE
    assert "sshUserPrivateKey(credentialsId: id, keyFileVariable: 'MODELS_SSH_KEY')" in JENKINSFILE
    assert "gitUsernamePassword(credentialsId: id" in JENKINSFILE
    for step in ("junit ", "publishHTML(", "archiveArtifacts "):
        assert step in POST
    assert "reportDir: 'build/report'" in POST and "build/report/**" in POST
    # The report first (publishHTML needs it), and its failure must not skip publishing and archiving.
    assert re.search(r"always \{\s*(//[^\n]*\n\s*)*catchError\([^)]*\) \{\s*sh 'ci/report.sh'\s*\}", POST)
    assert POST.index("ci/report.sh") < POST.index("publishHTML(") < POST.index("archiveArtifacts")
    assert "pollSCM" not in JENKINSFILE  # one trigger story: the git host's webhook (docs/jenkins.md)
    # Every stage step is one ci/ script (or that script inside a credentials binding).
    steps = re.findall(r"steps \{\s*(.*?)\s*\}\s*\}", STAGES, re.S)
    assert steps and all(re.fullmatch(r"(withCredentials\(\w+\(\)\) \{\s*)?" + SH_STEP + r"(\s*\})?", s) for s in steps)


def test_every_knob_the_scripts_read_is_a_described_build_parameter():
    parameters = dict(re.findall(r"string\(name: '(\w+)', defaultValue: '[^']*',\s*description: '([^']+)'",
                                 JENKINSFILE))
    jenkins_sets = {"WORKSPACE", "BRANCH_NAME", "BUILD_NUMBER", "GIT_COMMIT", "MLSM_VENV", "MODELS_SSH_KEY",
                    "MLSM_MONGO_URI", "BASH_SOURCE"}
    written_by_checkout = {"MODELS_DIR", "MODELS_REPO_URL", "MODELS_COMMIT"}  # build/models.env
    scripts = [p.read_text() for p in (ROOT / "ci").glob("*.sh")
               if p.name not in ("setup.sh", "tools.sh", "test.sh", "demo.sh")]  # those are not stages
    text = "\n".join(scripts)  # lib.sh is sourced by every stage script
    assigned = set(re.findall(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=", text, re.M))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    knobs = read - assigned - jenkins_sets - written_by_checkout
    assert knobs, read
    assert knobs <= set(parameters), knobs - set(parameters)
    assert "MLSM_DRAFT_BRANCHES" in parameters and "MONGO_CREDENTIALS_ID" in parameters
    assert all(len(description) > 20 for description in parameters.values())
