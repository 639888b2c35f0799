"""A summary notebook's dependencies: the models its `models` cell names, checked against those present."""

from __future__ import annotations

from ..exceptions import NotebookError
from .contract import NotebookSpec


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
                                *spec.where("models"))
