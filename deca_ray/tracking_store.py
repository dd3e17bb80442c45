"""Where a run's MLflow records go: tracking URI and experiment, and stores a Ray job would lose.

Precedence, as MLflow's own tools use it: an explicit config value (``tracking.tracking_uri``,
``tracking.experiment``), then ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME``, then a
sqlite store under ``tracking.output_dir`` and the experiment ``deca-ray``.

A Ray job (``ray job submit``) runs in a copy of its working directory that Ray deletes with
the job and that no other machine sees, so a local store inside it (a relative path, or any
file / sqlite store under the job's working directory) is refused with what to set instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from deca_ray.config import TrackingConfig
from deca_ray.errors import RuntimeSetupError

_LOCAL_SCHEMES = ("", "file", "sqlite")
_RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor for the entrypoint; its metadata holds the job's submission id."""


def tracking_uri(config: TrackingConfig) -> str:
    """The store the run logs to; the default one's folder is created."""
    explicit = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return explicit or default_tracking_uri(config.output_dir)


def planned_tracking_uri(config: TrackingConfig) -> str:
    """``tracking_uri`` without creating anything (for checks made before a run writes)."""
    return config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _sqlite_uri_in(config.output_dir)


def experiment_name(config: TrackingConfig) -> str:
    """``tracking.experiment`` when the config sets it, else ``$MLFLOW_EXPERIMENT_NAME``, else the default."""
    if "experiment" in config.model_fields_set:
        return config.experiment
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.experiment


def default_tracking_uri(output_dir: Path) -> str:
    """A sqlite store shared by all runs under ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return _sqlite_uri_in(output_dir)


def _sqlite_uri_in(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir.resolve() / 'mlflow.db').as_posix()}"


def ray_job_id() -> str | None:
    """The submission id of the Ray job this process runs as (``raysubmit_...``), else ``$RAY_JOB_ID``,
    else the job id of a Ray connection this process already holds; None outside Ray jobs."""
    raw = os.environ.get(_RAY_JOB_CONFIG_ENV)
    if raw:
        try:
            submission_id = json.loads(raw).get("metadata", {}).get("job_submission_id")
        except (json.JSONDecodeError, AttributeError):
            submission_id = None
        if submission_id:
            return str(submission_id)
    if os.environ.get("RAY_JOB_ID"):
        return os.environ["RAY_JOB_ID"]
    ray = sys.modules.get("ray")  # never import Ray just to ask
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_job_id()
    return None


def under_ray_job() -> bool:
    """Whether this process is the entrypoint of a submitted Ray job."""
    return bool(os.environ.get(_RAY_JOB_CONFIG_ENV) or os.environ.get("RAY_JOB_ID"))


def check_store_outlives_job(uri: str, working_dir: Path | None = None) -> None:
    """Under a Ray job, refuse a local store inside the job's working directory (Ray deletes it)."""
    if not under_ray_job():
        return
    path = local_store_path(uri)
    if path is None:
        return  # a tracking server or a database service
    working_dir = (working_dir or Path.cwd()).resolve()
    inside = not path.is_absolute() or path.resolve().is_relative_to(working_dir) or "runtime_resources" in path.parts
    if inside:
        raise RuntimeSetupError(
            f"this run is Ray job {ray_job_id()} and its MLflow store {uri!r} lies in the job's working directory "
            f"{working_dir}, which Ray deletes with the job and other machines cannot see. Set MLFLOW_TRACKING_URI "
            "to a tracking server (e.g. http://mlflow.<namespace>:5000) in the job's runtime_env env_vars, or "
            "tracking.tracking_uri / tracking.output_dir to an absolute path on shared storage "
            "(e.g. sqlite:////shared/mlflow.db)"
        )


def local_store_path(uri: str) -> Path | None:
    """The filesystem path of a file / sqlite / plain-path store (relative when the URI is); None otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme not in _LOCAL_SCHEMES and not (len(parsed.scheme) == 1 and uri[1:2] == ":"):
        return None
    if parsed.scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///"))  # sqlite:///rel.db, sqlite:////abs/mlflow.db
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(uri)


def where_to_look(uri: str, experiment_id: str, run_id: str) -> str:
    """A link to the run for a server, the ``mlflow ui`` command for a local store."""
    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{uri} ({browse_command(uri)})"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def browse_command(uri: str) -> str:
    """How to open a local store in MLflow's UI (a server is opened by its own URL)."""
    return f"browse: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
