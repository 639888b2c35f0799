"""What the report shows of a model version's approval and of the comparisons that are its evidence.

With MongoDB, the registry's approval of the version (who, when, which sha256, what it cites) and its latest
comparison as challenger (`audit.evidence`, collection ``evidence``), with the registry's policies; without,
the comparisons kept in the run directory (``evidence.jsonl``), there being no approvals there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..audit.database import AuditDatabase, as_plain
from ..audit.evidence import run_evidence
from ..core.model import model_key, split_model_key


def approvals_and_evidence(run_dir: Path, keys: Iterable[str], database: AuditDatabase | None = None) -> dict:
    """Per name@version of `keys`: ``{"approval": ... or None, "evidence": latest comparison or None,
    "source": where they were read}``; plus ``"_policy"`` (with MongoDB: approvals and evidence required?)."""
    keys = list(keys)
    found: dict = {}
    if database is not None:
        registry = database.store.registry
        entries = registry.entries(split_model_key(k) for k in keys) if registry.exists() else {}
        for key in keys:
            name, version = split_model_key(key)
            found[key] = {"approval": as_plain((entries.get((name, version)) or {}).get("approval")),
                          "evidence": as_plain(registry.latest_evidence(name, version)),
                          "source": f"the model registry of MongoDB ({database.store.db.name})"}
        found["_policy"] = {"approvals": registry.approvals_required(), "evidence": registry.evidence_required()}
        return found
    kept = run_evidence(run_dir)
    for key in keys:
        mine = [e for e in kept if model_key(e["challenger"]["name"], e["challenger"]["version"]) == key]
        found[key] = {"approval": None, "evidence": mine[-1] if mine else None,
                      "source": "this run directory (evidence.jsonl; approvals live in MongoDB's registry)"}
    found["_policy"] = None
    return found
