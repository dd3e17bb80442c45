"""Start-up checks of every place a run will write or reach, made before anything is written or spawned.

The output and checkpoint directories must be directories this process can create files in
(probed with an unnamed temporary file, so nothing is left behind), the tracking URI must
name a store MLflow can open (a known scheme, a host for a server, which must answer), and
the cache must be writable when the run has to add to it (a model to convert, a data file to
copy). Each failure is a ``ConfigError`` naming the setting to change.
"""

from __future__ import annotations

import os
import socket
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from deca_ray.config import ExperimentConfig, TrackingConfig
from deca_ray.errors import ConfigError
from deca_ray.models import SMOLLM2, TINY_LLAMA, cache_dir, check_model_folder, packaged_model_ready
from deca_ray.tracking_store import check_store_outlives_job, planned_tracking_uri

_SERVER_SCHEMES = ("http", "https")
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
_OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")
_PROBE_TIMEOUT_S = 5.0


def preflight(config: ExperimentConfig, resume_dir: Path | None = None) -> None:
    """Every check of where a run writes and what it reads first (``resume_dir``: the run a resume appends to)."""
    check_model_folder(config.model)
    check_writable_dir(config.tracking.output_dir, "tracking.output_dir")
    if config.checkpoint.directory is not None:
        check_writable_dir(config.checkpoint.directory, "checkpoint.directory")
    if resume_dir is not None:
        check_writable_dir(resume_dir, "the run directory (--resume)")
    if config.tracking.enabled:
        check_tracking_uri(config.tracking)
        check_store_outlives_job(planned_tracking_uri(config.tracking))  # before the run directory exists
    check_cache(config)


def check_writable_dir(path: Path, setting: str) -> None:
    """``path`` is a writable directory, or one that can be created (nothing is created here)."""
    path = path.expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{setting}={path}: {existing} is a file, not a directory; choose another {setting}")
    try:
        with tempfile.TemporaryFile(dir=existing):  # unnamed on Linux (O_TMPFILE): no trace is left
            pass
    except OSError as error:
        raise ConfigError(f"{setting}={path}: cannot write in {existing} ({error.strerror or error}); make it "
                          f"writable or choose another {setting}") from None


def check_tracking_uri(config: TrackingConfig) -> None:
    """The store MLflow will open: a known scheme, a host for a server (which must answer), a usable path."""
    uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return  # the default sqlite store lives in tracking.output_dir, checked already
    setting = "tracking.tracking_uri" if config.tracking_uri else "MLFLOW_TRACKING_URI"
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if len(scheme) <= 1:  # a plain path (or a Windows drive letter)
        check_writable_dir(Path(uri), setting)
    elif scheme == "sqlite":
        check_writable_dir(Path(uri.removeprefix(f"{parsed.scheme}:///")).parent, setting)
    elif scheme == "file":
        check_writable_dir(Path(parsed.path), setting)
    elif scheme in _SERVER_SCHEMES:
        _check_server(uri, setting)
    elif scheme not in _DATABASE_SCHEMES + _OTHER_SCHEMES:
        raise ConfigError(
            f"{setting}={uri!r}: unknown scheme {parsed.scheme!r}; use http(s)://HOST:PORT for a tracking server, "
            "sqlite:///PATH/mlflow.db, file:///PATH or a directory, or leave it unset for a sqlite store in "
            "tracking.output_dir"
        )


def _check_server(uri: str, setting: str) -> None:
    parsed = urlparse(uri)
    if not parsed.hostname:
        raise ConfigError(f"{setting}={uri!r} names no host; write it as {parsed.scheme}://HOST:PORT")
    if urllib.request.getproxies():
        return  # reached through a proxy: the tracker's own start-up check decides
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise ConfigError(
            f"{setting}={uri!r}: no MLflow server answers at {parsed.hostname}:{port} ({error.strerror or error}); "
            "start it (see README), fix the address, or set tracking.enabled=false"
        ) from None


def check_cache(config: ExperimentConfig) -> None:
    """The cache must be writable if this run adds to it: a packaged model to convert, a data file to copy."""
    root = cache_dir(config.model)
    uses_packaged = config.model.name in (SMOLLM2, TINY_LLAMA) and config.model.tokenizer is None
    converts = uses_packaged and not packaged_model_ready(config.model)
    copies_data = Path(config.data.source).expanduser().is_file()
    if converts or copies_data:
        check_writable_dir(root, "the cache directory (DECA_RAY_CACHE or model.cache_dir)")
