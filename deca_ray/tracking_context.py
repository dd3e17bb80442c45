"""What makes a run findable and readable in the MLflow UI: run tags, the experiment kind, dataset inputs.

- Run tags: the code version (``mlflow.source.git.commit``, the tag the UI shows as the run's
  commit), the method, package versions, the Ray job, the number of clients and the topology.
- The experiment kind (``mlflow.experimentKind`` = ``custom_model_development``): MLflow 3's UI
  opens an experiment in model-training mode, not GenAI mode, from this tag.
- Each client's shard as a dataset input (context ``training``) with its class counts, and the
  held-out split (context ``evaluation``): the UI lists them under the run's "Datasets used".
"""

from __future__ import annotations

import json
import subprocess
import warnings
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from deca_ray.config import ExperimentConfig
from deca_ray.data.types import PreparedData

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
"""MLflow 3's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT (the other kinds are GenAI ones)."""
GIT_COMMIT_TAG = "mlflow.source.git.commit"


def run_tags(config: ExperimentConfig, job_id: str | None) -> dict[str, str]:
    tags = {
        "deca_ray.method": config.algorithm.type,
        "deca_ray.num_clients": str(config.num_clients),
        "deca_ray.topology": config.topology.type,
        "deca_ray.backend": config.runtime.backend,
        "deca_ray.model": config.model.name,
        "deca_ray.version": _version("deca-ray"),
        "ray.version": _version("ray"),
        "torch.version": _version("torch"),
        "transformers.version": _version("transformers"),
    }
    if job_id:
        tags["ray.job_id"] = job_id
    commit = git_commit()
    if commit is not None:
        tags[GIT_COMMIT_TAG], dirty = commit
        tags["deca_ray.git_dirty"] = str(dirty).lower()
    return tags


def git_commit() -> tuple[str, bool] | None:
    """(HEAD commit, uncommitted changes?) of the repository holding deca_ray's code, else of the
    working directory; None outside a git repository (e.g. an installed wheel, a Ray job's copy)."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        commit = _git(where, "rev-parse", "HEAD")
        if commit:
            return commit, bool(_git(where, "status", "--porcelain", "--untracked-files=no"))
    return None


def client_datasets(data: PreparedData, source: str) -> list[tuple[Any, str, dict[str, str]]]:
    """(mlflow dataset, context, tags) for every client's shard and for the held-out split."""
    import mlflow.data
    import pandas as pd

    report = data.partition_report
    labels = report.get("labels", [])
    entries = []
    with warnings.catch_warnings():  # a source name like "bbc_news" resolves ambiguously; counts are ints
        warnings.simplefilter("ignore", UserWarning)
        for client, (counts, size) in enumerate(zip(report.get("counts", []), report.get("sizes", []), strict=True)):
            frame = pd.DataFrame({"label": labels, "examples": counts})
            dataset = mlflow.data.from_pandas(frame, source=source, name=f"client_{client}")  # type: ignore[attr-defined]
            class_counts = counts_tag(dict(zip(labels, counts, strict=True)))
            tags = {"client": str(client), "examples": str(size), "class_counts": class_counts}
            entries.append((dataset, "training", tags))
        words = data.label_words
        labels_held_out = Counter(words[e.label] if 0 <= e.label < len(words) else "-" for e in data.test)
        held_out = dict(sorted(labels_held_out.items()))
        frame = pd.DataFrame({"label": list(held_out), "examples": list(held_out.values())})
        dataset = mlflow.data.from_pandas(frame, source=source, name="held_out")  # type: ignore[attr-defined]
        entries.append((dataset, "evaluation", {"examples": str(len(data.test)), "class_counts": counts_tag(held_out)}))
    return entries


MAX_TAG_CHARS = 500
"""MLflow refuses an input tag value longer than this."""


def counts_tag(counts: dict[str, int]) -> str:
    """Class counts as a JSON tag within MLflow's limit: labels with no example left out, the largest
    first; when many labels still do not fit, as many as fit and one "(k other labels)" entry with the
    examples of the rest, so the values still sum to the shard's size."""
    present = sorted(((label, int(n)) for label, n in counts.items() if n), key=lambda item: -item[1])
    for kept in range(len(present), -1, -1):
        shown = dict(present[:kept])
        if kept < len(present):
            shown[f"({len(present) - kept} other labels)"] = sum(n for _, n in present[kept:])
        text = json.dumps(shown)
        if len(text) <= MAX_TAG_CHARS:
            return text
    raise AssertionError("unreachable: an empty selection always fits")


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
