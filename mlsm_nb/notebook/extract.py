"""Writing a bundle (`mlsm-nb extract`): every notebook's model as a readable module, plus `manifest.json`.

Read a bundle back with `notebook.bundle.load_bundle`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .._version import __version__
from ..clock import utc_now
from ..exceptions import BundleError
from ..files import file_sha256, write_json
from .bundle import MANIFEST
from .contract import NotebookSpec, declarations, find_notebooks, lint_notebook
from .dependencies import check_dependencies
from .execute import load_spec


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
            model = load_spec(spec, timeout=timeout)
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
