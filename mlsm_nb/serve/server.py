"""Run the scoring service on uvicorn: one process, or several workers sharing the port."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile

from ..exceptions import MlsmError
from .app import ServeSettings, create_app
from .bundle import load_served_bundle
from .policy import bundle_policy, check_at_start


class ServeError(MlsmError):
    """The scoring service cannot start (address in use, ...)."""

_SETTINGS_ENV = "MLSM_SERVE_SETTINGS"


def app_from_environment():
    """The app of one worker process (uvicorn's factory when --workers > 1)."""
    settings = ServeSettings(**json.loads(os.environ[_SETTINGS_ENV]))
    settings.token = os.environ.get("MLSM_SERVE_TOKEN") or None
    return create_app(settings)


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          access_log: bool = False, on_ready=None) -> None:
    """Load and check the bundle (BundleError, or ConfigError when the registry's policies refuse it, before
    anything binds), then serve until interrupted."""
    import uvicorn

    bundle = load_served_bundle(settings.bundle_dir)
    check_at_start(bundle_policy(settings.mongo_uri, settings.mongo_db), bundle)  # the registry's policies
    _check_can_listen(host, port)
    if on_ready:
        on_ready(bundle)
    options = dict(host=host, port=port, access_log=access_log, log_level="warning", timeout_graceful_shutdown=15,
                   server_header=False)
    if workers == 1:
        _run(uvicorn, create_app(settings, bundle), options, host, port)
        return
    # Workers are separate processes: they get the settings (not the token) through the environment and
    # add their metrics up through prometheus_client's multiprocess directory.
    with tempfile.TemporaryDirectory(prefix="mlsm-serve-metrics-") as metrics_dir:
        shared = {k: v for k, v in dataclasses.asdict(settings).items() if k != "token"}
        os.environ[_SETTINGS_ENV] = json.dumps(shared)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        _run(uvicorn, "mlsm_nb.serve.server:app_from_environment", {**options, "factory": True, "workers": workers},
             host, port)


def _check_can_listen(host: str, port: int) -> None:
    """ServeError (one line) when the address cannot be bound, before anything else starts."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _run(uvicorn, app, options: dict, host: str, port: int) -> None:
    try:
        uvicorn.run(app, **options)
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start
        if exc.code not in (0, None):
            raise ServeError(f"the server on {host}:{port} could not start (see the log above)") from None
