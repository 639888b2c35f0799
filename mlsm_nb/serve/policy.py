"""The registry's policies (approvals, evidence) applied to a bundle serve is about to put in service.

With ``--mongo-uri``, a new bundle in BUNDLE_DIR whose active models the registry would not let a run start
with (`store.base.check_approvals`: unapproved, approved for another sha256, or, while evidence is required,
an approval citing no passing comparison of that code) is refused like a bundle that fails to load: the old
one stays in service and /health says why. A registry that cannot be read refuses the swap too (a policy
that cannot be checked is not met); POST /admin/reload asks again. At start, the bundle given is checked
the same way when the database answers; when it does not, serve starts (as it stores scores later) and logs
that the policy was not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..store.base import RegisteredVersion, StoreError, check_approvals
from .bundle import ServedBundle

log = logging.getLogger(__name__)


def bundle_policy(uri: str | None, database: str | None) -> Callable[[ServedBundle], None] | None:
    """A check of a bundle against the registry's policies (raises ConfigError or StoreError), None without
    MongoDB."""
    if not uri:
        return None

    def check(bundle: ServedBundle) -> None:
        from ..store.mongo import MongoStore

        active = RegisteredVersion.active_in(bundle.manifest.get("models", []))
        if not active:
            return
        store = MongoStore.connect(uri, database, retries=1, timeout_ms=3000)
        try:
            check_approvals([store], active)
        finally:
            store.close()

    return check


def check_at_start(check: Callable[[ServedBundle], None] | None, bundle: ServedBundle) -> None:
    """The policy check of the bundle serve starts with (ConfigError refuses it); a registry that cannot be
    read is logged, not fatal."""
    if check is None:
        return
    try:
        check(bundle)
    except StoreError as exc:
        log.warning("the registry's policies were not checked for the bundle served (%s): %s", bundle.sha256[:12],
                    exc)
