"""Hot swap: watch BUNDLE_DIR, load a new bundle in the background, switch atomically.

The bundle in service is one reference (`BundleSwitch.current`); a request reads
it once and scores everything with that object, so requests in flight finish on
the old set and no response mixes two bundles. A new bundle is loaded and
checked off the event loop (with MongoDB, against the registry's policies:
`serve.policy`) and only then put in place; one that fails is
refused (logged, shown by /health) and the old one stays. A refusal lasts
until BUNDLE_DIR holds a bundle that serves again: the one in service (a roll
back) or any good one. Loads never overlap: a reload asked for during a load
waits for it, then looks again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from .._gc import freeze_survivors
from ..clock import utc_now
from .bundle import ServedBundle, load_error_line, load_served_bundle, manifest_signature

log = logging.getLogger(__name__)


@dataclass
class Refusal:
    """A bundle that was not put in service, and why."""

    at: str
    error: str
    signature: tuple | None

    def as_dict(self) -> dict:
        return {"at": self.at, "error": self.error}


class BundleSwitch:
    """The bundle in service and the background loads that replace it."""

    def __init__(self, bundle_dir: str | Path, initial: ServedBundle, on_change=None, check=None):
        self.bundle_dir = Path(bundle_dir)
        self.check = check  # the registry's policies (serve.policy): raises to refuse a bundle
        self.current = initial
        self.signature = manifest_signature(bundle_dir)
        self.refused: Refusal | None = None
        self.swaps = 0
        self.on_change = on_change or (lambda outcome, bundle: None)
        self._lock = asyncio.Lock()

    async def reload(self, force: bool = False) -> dict:
        """Load the bundle now at BUNDLE_DIR if it changed (or `force`); returns what happened.

        The outcome is "swapped", "unchanged" or "refused" (with the error).
        """
        async with self._lock:
            signature = manifest_signature(self.bundle_dir)
            if signature is None:
                return self._refuse(None, f"{self.bundle_dir}: no manifest.json there (yet); still serving "
                                          f"{self.current.sha256[:12]}")
            if not force and signature == self.signature:
                self._clear("BUNDLE_DIR holds the bundle in service again")
                return {"outcome": "unchanged", "bundle": self.current.sha256}
            if not force and self.refused and signature == self.refused.signature:
                return {"outcome": "refused", "bundle": self.current.sha256, "error": self.refused.error}
            try:
                bundle = await asyncio.to_thread(load_served_bundle, self.bundle_dir)
                if self.check is not None:
                    await asyncio.to_thread(self.check, bundle)
            except Exception as exc:  # noqa: BLE001 - any failure of a bundle's code refuses it
                return self._refuse(signature, load_error_line(exc))
            self.signature = signature
            if bundle.sha256 == self.current.sha256:
                self._clear("BUNDLE_DIR holds the bundle in service again")
                return {"outcome": "unchanged", "bundle": bundle.sha256}
            previous, self.current = self.current.sha256, bundle
            self.swaps += 1
            log.info("bundle swapped: %s -> %s (%s)", previous[:12], bundle.sha256[:12], bundle.path)
            self._clear("a good bundle was swapped in")
            self.on_change("swapped", bundle)
            # the old bundle's code is collected now, the new one's left alone from here on (requests still
            # scoring with the old one keep it alive: then it goes at the next swap)
            freeze_survivors()
            return {"outcome": "swapped", "bundle": bundle.sha256, "previous": previous}

    def _refuse(self, signature: tuple | None, error: str) -> dict:
        if not (self.refused and self.refused.error == error):
            log.error("bundle refused, still serving %s: %s", self.current.sha256[:12], error)
            self.on_change("refused", self.current)
        self.refused = Refusal(utc_now(), error, signature)
        return {"outcome": "refused", "bundle": self.current.sha256, "error": error}

    def _clear(self, why: str) -> None:
        if self.refused:
            log.warning("bundle refusal cleared (%s): serving %s", why, self.current.sha256[:12])
        self.refused = None

    async def watch(self, interval: float) -> None:
        """Poll BUNDLE_DIR's manifest every `interval` seconds and reload when it holds another bundle than
        the one last decided on (the one in service, or the one refused since)."""
        while True:
            await asyncio.sleep(interval)
            signature = manifest_signature(self.bundle_dir)
            if signature is None or signature == (self.refused.signature if self.refused else self.signature):
                continue
            try:
                await self.reload()
            except Exception:  # noqa: BLE001 - the watcher must outlive any surprise
                log.exception("bundle watcher")

    def health(self) -> dict:
        """The swap's state for /health."""
        return {"bundle": self.current.describe(), "swaps": self.swaps,
                "refused": self.refused.as_dict() if self.refused else None}
