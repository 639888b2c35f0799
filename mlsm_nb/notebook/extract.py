"""Notebook -> Model: `load_notebook`, and bundles of extracted models.

A notebook's production cells (the tagged ones, in authored order) run in a
fresh module namespace with the notebook's folder as working directory; its
declarations (name, version, status, fields, models) come from `ast` literals
read before anything runs. A bundle holds one readable Python module per model
plus `manifest.json`; `load_bundle` refuses a module whose hash changed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from pathlib import Path
from collections.abc import Iterable, Mapping

from .._version import __version__
from ..core.cells import module_layout, set_layout
from ..core.fields import PARSE_LOCK
from ..files import file_sha256, write_json
from ..clock import utc_now
from ..exceptions import BundleError, NotebookError, format_location
from ..core.model import Model, build_model
from .contract import NotebookSpec, find_notebooks, lint_notebook

MANIFEST = "manifest.json"
_CWD_LOCK = threading.RLock()  # chdir is process-wide


def git_info(path: Path) -> dict:
    """Last commit touching `path` and whether it has uncommitted changes (empty outside git)."""
    def git(*args):
        result = subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("log", "-1", "--format=%H", "--", path.name)
    if not commit:
        return {}
    return {"git_commit": commit, "git_dirty": bool(git("status", "--porcelain", "--", path.name))}


@contextlib.contextmanager
def working_directory(folder: Path):
    """Run with `folder` as working directory and importable, as a kernel started there would."""
    with _CWD_LOCK, contextlib.chdir(folder):
        sys.path.insert(0, str(folder))
        try:
            yield
        finally:
            sys.path.remove(str(folder))


def _failure_line(exc: BaseException, filename: str) -> int | None:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        lines.append(exc.lineno)
    return lines[-1] if lines else None


def _run_source(source: str, filename: str, namespace: dict) -> None:
    with PARSE_LOCK:
        code = compile(source, filename, "exec")
    exec(code, namespace)  # noqa: S102 - running the model's code is the point


class _CellTimeout(BaseException):
    """Raised inside a production cell when its time is up (BaseException: `except Exception` cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Interrupt the code inside after `seconds` (SIGALRM: only in the main thread; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _CellTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _new_namespace(spec_name: str, version: str, filename: str) -> dict:
    module = types.ModuleType(f"mlsm_model_{spec_name}_{version}".replace(".", "_").replace("-", "_"))
    module.__file__ = filename
    return module.__dict__


def execute_production_cells(spec: NotebookSpec, parameters: Mapping | None = None,
                             timeout: float | None = None) -> dict:
    """Run the production cells of a linted notebook; returns the namespace.

    `parameters` override the `parameters` cell's defaults (set right after
    it, or first when there is none), as papermill does. A cell that raises,
    or runs longer than `timeout` seconds, becomes a NotebookError naming the
    cell, tag and line.
    """
    namespace = _new_namespace(spec.name, spec.version, str(spec.path))
    if spec.cell("parameters") is None:
        namespace.update(parameters or {})
    with working_directory(spec.path.parent.resolve()):
        for cell in spec.cells:
            filename = format_location(spec.path, cell.index, cell.tag)  # names the cell in tracebacks
            try:
                with time_limit(timeout):
                    _run_source(cell.source, filename, namespace)
            except _CellTimeout:
                raise NotebookError(spec.path, f"did not finish within {timeout:g} s (a loop that never ends? "
                                    "a slow download?); give it longer with --timeout", cell.index, cell.tag) from None
            except Exception as exc:  # noqa: BLE001 - any failure of the notebook's code
                line = _failure_line(exc, filename)
                where = f" at line {line}" if line else ""
                hint = ("; production runs only the tagged cells: define it in a tagged cell, or save it beside "
                        "the notebook and load it in `setup`" if isinstance(exc, NameError) else "")
                raise NotebookError(spec.path, f"raised {type(exc).__name__}{where}: {exc}{hint}",
                                    cell.index, cell.tag) from None
            if cell.tag == "parameters":
                namespace.update(parameters or {})
    if not callable(namespace.get("score")):
        raise NotebookError(spec.path, "running the score cell did not define a callable `score`",
                            *_cell_at(spec, "score"))
    return namespace


def _cell_at(spec: NotebookSpec, tag: str) -> tuple[int | None, str]:
    cell = spec.cell(tag)
    return (cell.index if cell else None), tag


def declarations(spec: NotebookSpec) -> dict:
    """What a notebook declares, as a JSON-ready dict (the bundle manifest's entry)."""
    return {
        "name": spec.name, "version": spec.version, "status": spec.status, "kind": spec.kind,
        "fields": spec.fields, "models": spec.models, "artifacts": spec.artifacts,
        "has_score_frame": spec.has_score_frame,
    }


def _provenance(spec: NotebookSpec) -> dict:
    return {
        "source": str(spec.path), "sha256": spec.sha256(),
        "extracted_at": utc_now(),
        **git_info(spec.path.resolve()),
    }


def load_notebook(path: str | Path, parameters: Mapping | None = None, timeout: float | None = None) -> Model:
    """Lint a notebook, run its production cells and return its Model or SummaryModel.

    The object carries `provenance`: source path, sha256 of the production
    cells (and artifacts), git commit of the file, extraction time.
    `parameters` override the notebook's `parameters` cell; `timeout`
    bounds each cell (in the main thread). Raises NotebookError naming the
    file, cell and tag on any problem.
    """
    return _load_spec(lint_notebook(path), parameters, timeout)


def _load_spec(spec: NotebookSpec, parameters: Mapping | None = None, timeout: float | None = None) -> Model:
    namespace = execute_production_cells(spec, parameters, timeout)
    return build_model(declarations(spec), namespace, _provenance(spec))


# --- bundles ----------------------------------------------------------------

def _module_text(spec: NotebookSpec, provenance: Mapping) -> str:
    header = "\n".join(f"#   {key}: {value}" for key, value in provenance.items())
    return (f"# Extracted by mlsm-nb {__version__} from {spec.path.name}: model {spec.name} "
            f"{spec.version} ({spec.kind}).\n# Generated file: edit the notebook, not this module.\n"
            f"# Provenance:\n{header}\n\n{spec.production_source()}")


def extract_bundle(paths: Iterable, out_dir: str | Path, *, status_override: str | None = None,
                   status_reason: str | None = None, provenance: Mapping | None = None,
                   timeout: float | None = None) -> dict:
    """Extract every notebook under `paths` into a bundle at `out_dir`; returns the manifest.

    Each notebook is linted and its production cells executed first, so a bad
    notebook raises before anything is written; the bundle is assembled in a
    temporary folder and moved into place whole. `status_override` (e.g. "draft"
    on a develop branch) replaces every notebook's status, with `status_reason`.
    `timeout` bounds each production cell's run, in seconds.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir}: already exists and is not empty; choose another --out")
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise BundleError(f"no notebooks found in {', '.join(map(str, paths))}")
    specs = [lint_notebook(path) for path in notebooks]
    check_dependencies(specs)
    entries, seen = [], {}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mlsm-bundle-", dir=out_dir.parent))
    try:
        for spec in specs:
            model = _load_spec(spec, timeout=timeout)
            if model.key in seen:
                raise BundleError(f"{spec.path}: model {spec.name} {spec.version} is also defined in {seen[model.key]}")
            seen[model.key] = spec.path
            folder = f"{spec.name}-{spec.version}"
            (staging / folder).mkdir()
            module = staging / folder / "model.py"
            module.write_text(_module_text(spec, model.provenance))
            for artifact in spec.artifacts:
                shutil.copy2(spec.path.parent / artifact, staging / folder / artifact)
            entry = {**declarations(spec), **model.provenance, "module": f"{folder}/model.py",
                     "module_sha256": file_sha256(module),
                     "artifact_sha256": {a: file_sha256(staging / folder / a) for a in spec.artifacts}}
            if status_override and status_override != spec.status:
                entry.update(notebook_status=spec.status, status=status_override,
                             status_reason=status_reason or f"forced to {status_override}")
            entries.append(entry)
        manifest = {"mlsm_nb_version": __version__,
                    "created_at": utc_now(),
                    **dict(provenance or {}), "models": entries}
        write_json(staging / MANIFEST, manifest)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def missing_models(spec: NotebookSpec, present) -> tuple[str, list[str]]:
    """What a summary's `models` cell names that is not among `present` ((name, version) pairs), as text
    ("" when nothing is missing), and the other versions of those names that are present."""
    missing = [(m["name"], m["version"]) for m in spec.models if (m["name"], m["version"]) not in present]
    names = {name for name, _ in missing}
    others = sorted(f"{name} {version}" for name, version in set(present) if name in names)
    return ", ".join(f"{name} {version}" for name, version in missing), others


def check_dependencies(specs: list[NotebookSpec]) -> None:
    """Raise NotebookError (naming the `models` cell) when a summary needs a model not among `specs`."""
    present = {(s.name, s.version) for s in specs}
    for spec in specs:
        missing, others = missing_models(spec, present)
        if missing:
            advice = (f"the notebooks given have {', '.join(others)}: change the version in `models`, or add the "
                      "notebook of that version" if others else "add their notebooks to the paths")
            raise NotebookError(spec.path, f"summary needs {missing}, not among the notebooks given; {advice}",
                                *_cell_at(spec, "models"))


def bundle_entries(bundle_dir: str | Path) -> list[dict]:
    """The models a bundle's manifest lists (declarations and provenance), each module and artifact checked
    against its recorded hash, without running any code; BundleError otherwise."""
    bundle_dir = Path(bundle_dir)
    try:
        manifest = json.loads((bundle_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: no readable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list) or not manifest["models"]:
        raise BundleError(f"{bundle_dir / MANIFEST}: lists no models; extract the bundle again")
    for entry in manifest["models"]:
        module = bundle_dir / entry["module"]
        if not module.is_file() or file_sha256(module) != entry["module_sha256"]:
            raise BundleError(f"{module}: missing or changed since extraction (sha256 does not match "
                              f"{MANIFEST}); extract the bundle again")
        for artifact, digest in entry.get("artifact_sha256", {}).items():
            if not (module.parent / artifact).is_file() or file_sha256(module.parent / artifact) != digest:
                raise BundleError(f"{module.parent / artifact}: artifact missing or changed since extraction")
    return manifest["models"]


def load_bundle(bundle_dir: str | Path) -> list[Model]:
    """The Model and SummaryModel objects of an extracted bundle, models first.

    Raises BundleError when the manifest is missing or a module or artifact
    no longer matches the hash the manifest recorded.
    """
    bundle_dir = Path(bundle_dir)
    loaded = []
    for entry in bundle_entries(bundle_dir):
        module = bundle_dir / entry["module"]
        namespace = _new_namespace(entry["name"], entry["version"], str(module))
        with working_directory(module.parent.resolve()):
            text = module.read_text()
            set_layout(namespace, str(module), module_layout(text))
            try:
                _run_source(text, str(module), namespace)
            except Exception as exc:  # noqa: BLE001
                raise BundleError(f"{module}: raised {type(exc).__name__}: {exc}") from None
        provenance = {k: entry[k] for k in ("source", "sha256", "git_commit", "extracted_at") if k in entry}
        loaded.append(build_model(entry, namespace, {**provenance, "bundle": str(bundle_dir)}))
    return sorted(loaded, key=lambda m: m.kind == "summary")
