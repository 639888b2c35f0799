"""A registered notebook version's production cells, found again by its sha256 (what `approve` compares).

A version is known by the sha256 of its production cells and artifacts, and by where it was registered
from (the registry's ``registrations.<sha256>``, or a run's manifest): a notebook path, a git commit and the
notebook's path in that repository. Its cells are read back from, in order:

1. a notebook file on this machine (the one `--notebook` names, or the registered path) that hashes to it;
2. the git commit it was registered at, in the repository the registered path is in or the current folder's
   (the notebook and its artifacts as of that commit, hashed again, so a notebook registered with
   uncommitted changes is not mistaken for its commit);
3. a run directory that ran it: the notebook as its author saved it when the run started (or, from runs
   kept before those copies, the production notebook the papermill engine ran), trusted on its
   manifest's sha256 (a run directory keeps no artifacts).

Each place that does not have it says why, so a caller can say where it looked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

from ..core.model import model_key
from ..exceptions import MlsmError
from ..notebook.changes import artifact_digests
from ..notebook.contract import Cell, inspect_notebook
from ..notebook.provenance import file_at_commit, has_commit, repository_root
from ..store.rundir import RunDirectory


@dataclass
class FoundVersion:
    """A version's production cells, where they were read, and its artifacts' sha256 (None: not kept there)."""

    sha256: str
    cells: list[Cell]
    where: str
    artifacts: dict[str, str | None] | None = None


@dataclass
class Search:
    """The version found (or None) and why each place looked at did not have it."""

    found: FoundVersion | None = None
    tried: list[str] = field(default_factory=list)


def _short(sha256: str) -> str:
    return f"{sha256[:12]}…"


def _from_file(path: Path, sha256: str) -> tuple[FoundVersion | None, str]:
    if not path.is_file():
        return None, f"{path}: no such file here"
    spec, _ = inspect_notebook(path)
    if spec is None:
        return None, f"{path}: not a readable notebook"
    if spec.sha256() != sha256:
        return None, f"{path} hashes to {_short(spec.sha256())} now"
    return FoundVersion(sha256, spec.cells, str(path), artifact_digests(spec)), ""


def _repositories(source: Path) -> list[Path]:
    """The repositories a registered commit may be read from: the registered notebook's, the current folder's."""
    return list(dict.fromkeys(root for root in map(repository_root, (source.parent, Path.cwd())) if root))


def _git_path(registration: Mapping, root: Path) -> str:
    if registration.get("git_path"):
        return registration["git_path"]
    source = Path(registration.get("source") or "")  # registered before paths in the repository were recorded
    try:
        return source.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return source.as_posix()


def _at_commit(root: Path, commit: str, path: PurePosixPath, sha256: str) -> tuple[FoundVersion | None, str]:
    """The notebook at `path` and its artifacts as of `commit`, if they hash to `sha256`."""
    blob = file_at_commit(root, commit, str(path))
    if blob is None:
        return None, f"{path} is not in commit {commit[:12]} of {root}"
    with tempfile.TemporaryDirectory(prefix="mlsm-approve-") as folder:
        notebook = Path(folder) / path.name
        notebook.write_bytes(blob)
        spec, _ = inspect_notebook(notebook)
        if spec is None:
            return None, f"{path} at commit {commit[:12]} is not a readable notebook"
        for name in spec.artifacts:
            if name.startswith("/") or ".." in PurePosixPath(name).parts:
                continue  # lint refuses such names; the hash then counts the artifact as missing
            content = file_at_commit(root, commit, str(path.parent / name))
            if content is not None:
                (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / name).write_bytes(content)
        if spec.sha256() != sha256:
            return None, f"{path} at commit {commit[:12]} hashes to {_short(spec.sha256())}"
        artifacts = artifact_digests(spec)
    return FoundVersion(sha256, spec.cells, f"git commit {commit[:12]}:{path}", artifacts), ""


def _from_git(registration: Mapping, sha256: str) -> tuple[FoundVersion | None, str]:
    """The version at the commit checked out when it was registered (`git_head`), else at the notebook's
    last commit before it (`git_commit`; registrations before heads were recorded)."""
    commits = list(dict.fromkeys(c for c in (registration.get("git_head"), registration.get("git_commit")) if c))
    source = Path(registration.get("source") or "")
    if not commits:
        return None, f"{registration.get('source') or 'the notebook'} was registered outside git (no commit)"
    roots = _repositories(source)
    if not roots:
        return None, f"no git repository at {source.parent} or here to read commit {commits[0][:12]} from"
    why = []
    for commit in commits:
        root = next((r for r in roots if has_commit(r, commit)), None)
        if root is None:
            why.append(f"commit {commit[:12]} is not in the git repository at {', '.join(map(str, roots))} "
                       "(git fetch it, or run approve in a checkout that has it)")
            continue
        found, problem = _at_commit(root, commit, PurePosixPath(_git_path(registration, root)), sha256)
        if found is not None:
            return found, ""
        why.append(problem)
    dirty = " (registered with uncommitted changes)" if registration.get("git_dirty") else ""
    return None, "; ".join(why) + dirty


def _kept_cells(run: RunDirectory, key: str) -> tuple[list[Cell] | None, str]:
    """The production cells a run directory kept of `key`: from the authored copy, else the papermill
    engine's production notebook (its cells name their source cell)."""
    authored = run.authored_path(key)
    if authored.is_file():
        spec, _ = inspect_notebook(authored)
        if spec is not None:
            return spec.cells, str(authored)
    production = run.notebook_path(key)
    if production.is_file():
        nb = nbformat.read(production, as_version=4)
        cells = [Cell(c.metadata["mlsm"]["source_cell"], c.metadata["mlsm"]["tag"], c.source)
                 for c in nb.cells if "source_cell" in c.metadata.get("mlsm", {})]
        return cells, str(production)
    return None, ""


def _from_runs(runs: Sequence[RunDirectory], name: str, version: str, sha256: str) -> tuple[FoundVersion | None, str]:
    if not runs:
        return None, "no run directory to look in (pass --run RUN_DIR)"
    key = model_key(name, version)
    ran = []
    for run in runs:
        try:
            manifest = run.read_manifest()
        except (MlsmError, OSError):  # an unreadable manifest: a run that does not have it
            continue
        if any((n.name, n.version, n.sha256) == (name, version, sha256) for n in manifest.notebooks):
            ran.append(run)
            cells, where = _kept_cells(run, key)
            if cells is not None:
                return FoundVersion(sha256, cells, f"run directory {run.root} ({Path(where).name})"), ""
    if ran:
        return None, f"run {ran[0].root.name} ran it but kept no copy of the notebook"
    return None, f"no run in {', '.join(dict.fromkeys(str(r.root.parent) for r in runs))} ran it"


def find_version(name: str, version: str, sha256: str, *, files: Iterable[Path] = (),
                 registrations: Iterable[Mapping] = (), runs: Sequence[RunDirectory] = ()) -> Search:
    """The production cells of `name` `version` as they were when they hashed to `sha256`: from `files`,
    then the git commits of `registrations`, then `runs` (see the module's docstring)."""
    search = Search()
    registrations = list(registrations)
    paths = list(dict.fromkeys([*map(Path, files), *(Path(r["source"]) for r in registrations if r.get("source"))]))
    commits: dict = {}
    for registration in registrations:  # the first of each commit and notebook: the fullest record
        commits.setdefault((registration.get("git_head") or registration.get("git_commit"),
                            registration.get("source")), registration)
    attempts = [lambda p=p: _from_file(p, sha256) for p in paths]
    attempts += [lambda r=r: _from_git(r, sha256) for r in commits.values()]
    attempts.append(lambda: _from_runs(runs, name, version, sha256))
    for attempt in attempts:
        found, why = attempt()
        if found is not None:
            search.found = found
            return search
        if why not in search.tried:
            search.tried.append(why)
    return search
