"""Reading an extracted bundle: its manifest's entries, checked against their hashes, and its models.

A bundle holds one readable Python module per model plus `manifest.json`;
`load_bundle` refuses a module whose hash changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.cells import module_layout, set_layout
from ..core.model import Model, build_model
from ..exceptions import BundleError
from ..files import file_sha256
from .execute import new_namespace, run_source, working_directory

MANIFEST = "manifest.json"


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
        namespace = new_namespace(entry["name"], entry["version"], str(module))
        with working_directory(module.parent.resolve()):
            text = module.read_text()
            set_layout(namespace, str(module), module_layout(text))
            try:
                run_source(text, str(module), namespace)
            except Exception as exc:  # noqa: BLE001
                raise BundleError(f"{module}: raised {type(exc).__name__}: {exc}") from None
        provenance = {k: entry[k] for k in ("source", "sha256", "git_commit", "extracted_at") if k in entry}
        loaded.append(build_model(entry, namespace, {**provenance, "bundle": str(bundle_dir)}))
    return sorted(loaded, key=lambda m: m.kind == "summary")
