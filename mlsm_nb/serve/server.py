"""Run the scoring service on uvicorn: one process, or several workers sharing the port."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from .app import ServeSettings, create_app
from .bundle import load_served_bundle

_SETTINGS_ENV = "MLSM_SERVE_SETTINGS"


def app_from_environment():
    """The app of one worker process (uvicorn's factory when --workers > 1)."""
    settings = ServeSettings(**json.loads(os.environ[_SETTINGS_ENV]))
    settings.token = os.environ.get("MLSM_SERVE_TOKEN") or None
    return create_app(settings)


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          access_log: bool = False, on_ready=None) -> None:
    """Load and check the bundle (BundleError before anything binds), then serve until interrupted."""
    import uvicorn

    bundle = load_served_bundle(settings.bundle_dir)
    if on_ready:
        on_ready(bundle)
    options = dict(host=host, port=port, access_log=access_log, log_level="warning", timeout_graceful_shutdown=15)
    if workers == 1:
        uvicorn.run(create_app(settings, bundle), **options)
        return
    # Workers are separate processes: they get the settings (not the token) through the environment and
    # add their metrics up through prometheus_client's multiprocess directory.
    with tempfile.TemporaryDirectory(prefix="mlsm-serve-metrics-") as metrics_dir:
        shared = {k: v for k, v in dataclasses.asdict(settings).items() if k != "token"}
        os.environ[_SETTINGS_ENV] = json.dumps(shared)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("mlsm_nb.serve.server:app_from_environment", factory=True, workers=workers, **options)
