"""Sample records for a folder of notebooks, from their own `fields` and `examples` (read, never run).

What the Jenkins sample stage scores when no records file is given (`ci/sample-run.sh`):
`python -m mlsm_nb.validate.samples COUNT PATHS... [--seed S] [--out FILE]` writes JSON Lines.
Whatever fields a team's models read, every model gets legal, realistic inputs (see `core.samples`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..core.fields import FieldSpec, parse_fields
from ..core.samples import sample_records
from ..exceptions import ConfigError, FieldSpecError
from ..files import dumps
from ..notebook.contract import find_notebooks, inspect_notebook


def notebook_fields(paths: Sequence) -> tuple[list[FieldSpec], list[dict]]:
    """(field specs, example inputs) of the notebooks under `paths` that lint reads cleanly."""
    specs: list[FieldSpec] = []
    examples: list[dict] = []
    for path in find_notebooks(paths):
        spec, problems = inspect_notebook(path)
        if spec is None or problems:
            continue
        try:
            specs += parse_fields(spec.fields)
        except FieldSpecError:
            continue
        examples += [e["data"] for e in spec.examples]
    return specs, examples


def notebook_samples(paths: Sequence, count: int, seed: int = 0, id_field: str = "id") -> list[dict]:
    """`count` records whose flat `data` every model and summary under `paths` accepts."""
    specs, examples = notebook_fields(paths)
    if not specs:
        raise ConfigError(f"no notebook under {', '.join(map(str, paths))} declares `fields` that lint accepts: "
                          "nothing to make sample records from")
    return sample_records(specs, count, seed, examples, id_field)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m mlsm_nb.validate.samples COUNT PATHS... [--seed S] [--out FILE]`: sample records as JSON Lines."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlsm_nb.validate.samples", description=main.__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("paths", nargs="+", help="notebooks, or folders of them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        records = notebook_samples(args.paths, args.count, args.seed)
    except ConfigError as exc:
        parser.exit(1, f"error: {exc}\n")
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    with out:
        for record in records:
            out.write(dumps(record) + b"\n")


if __name__ == "__main__":
    main()
