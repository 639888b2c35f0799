"""Synthetic marketing leads, reproducible from a seed.

Used by the demo, the tests, the benchmarks and the example notebooks. The
records are flat (``{"id": ..., "data": {...}}``) unless `nested_models` names
(model, version) pairs, in which case each pair gets its own copy of the inputs
under ``data[model][version]`` (MLSM's nested layout).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

INDUSTRIES = ("software", "finance", "healthcare", "manufacturing", "retail", "education", "government", "telecom")
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "NL")
LEAD_SOURCES = ("webinar", "trial", "content_download", "event", "paid_search", "referral", "cold_list")
JOB_TITLES = (
    "Chief Technology Officer", "VP Engineering", "Director of IT", "IT Manager", "Software Engineer",
    "Data Scientist", "System Administrator", "Student", "Consultant", "Marketing Manager", "",
)
_SENIOR_WORDS = ("chief", "vp", "director", "head")

LEAD_FIELDS = {
    "email_opens": {"type": "int", "min": 0},
    "email_clicks": {"type": "int", "min": 0},
    "site_visits": {"type": "int", "min": 0},
    "pages_viewed": {"type": "int", "min": 0},
    "days_since_last_activity": {"type": "int", "min": 0},
    "job_title": "str",
    "company_size": {"type": "int", "min": 0},
    "annual_revenue": {"type": "float", "min": 0, "nullable": True},
    "industry": {"type": "str", "allowed": list(INDUSTRIES)},
    "country": "str",
    "lead_source": {"type": "str", "allowed": list(LEAD_SOURCES)},
    "webinar_attended": "bool",
    "trial_signup": "bool",
}
"""The fields every generated lead has (a spec any model may copy from)."""


def _lead(rng: random.Random) -> dict:
    engagement = rng.random()
    company_size = int(math.exp(rng.uniform(0, 11)))
    source = rng.choice(LEAD_SOURCES)
    opens = int(rng.expovariate(1 / (1 + 12 * engagement)))
    return {
        "email_opens": opens,
        "email_clicks": int(opens * rng.random() * engagement),
        "site_visits": int(rng.expovariate(1 / (1 + 8 * engagement))),
        "pages_viewed": int(rng.expovariate(1 / (1 + 30 * engagement))),
        "days_since_last_activity": int(rng.expovariate(1 / (3 + 60 * (1 - engagement)))),
        "job_title": rng.choice(JOB_TITLES),
        "company_size": company_size,
        "annual_revenue": None if rng.random() < 0.15 else round(company_size * rng.uniform(50e3, 400e3), 2),
        "industry": rng.choice(INDUSTRIES),
        "country": rng.choice(COUNTRIES),
        "lead_source": source,
        "webinar_attended": source == "webinar" or rng.random() < 0.1 * engagement,
        "trial_signup": source == "trial" or rng.random() < 0.15 * engagement,
    }


def converted(lead: dict, rng: random.Random) -> bool:
    """A plausible ground truth (did the lead become an opportunity?) for training."""
    title = lead["job_title"].lower()
    logit = (-3.0 + 0.08 * lead["email_clicks"] + 0.15 * lead["site_visits"] + 1.2 * lead["trial_signup"]
             + 0.8 * lead["webinar_attended"] + 0.9 * any(w in title for w in _SENIOR_WORDS)
             + 0.25 * math.log1p(lead["company_size"]) - 0.02 * lead["days_since_last_activity"])
    return rng.random() < 1 / (1 + math.exp(-logit))


def generate_leads(count: int, seed: int = 0, *, id_field: str = "id",
                   nested_models: Sequence[tuple[str, str]] = ()) -> Iterator[dict]:
    """Yield `count` lead records, the same ones for the same seed."""
    rng = random.Random(seed)
    for i in range(count):
        lead = _lead(rng)
        if nested_models:
            data: dict = {}
            for name, version in nested_models:
                data.setdefault(name, {})[version] = dict(lead)
        else:
            data = lead
        yield {id_field: f"lead-{seed}-{i:07d}", "data": data}


def write_leads(out: TextIO, count: int, seed: int = 0) -> None:
    """Write `count` leads from `seed` to the text stream `out`, one JSON object per line."""
    import json

    for record in generate_leads(count, seed):
        out.write(json.dumps(record) + "\n")


def save_leads(path: str | Path, count: int, seed: int = 0) -> Path:
    """Write `count` leads from `seed` to the JSON Lines file `path`; returns the path."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as out:
        write_leads(out, count, seed)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m mlsm_nb.leads COUNT [--seed S] [--out FILE]`: write leads as JSON Lines."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m mlsm_nb.leads", description=main.__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    with out:
        write_leads(out, args.count, args.seed)


if __name__ == "__main__":
    main()
