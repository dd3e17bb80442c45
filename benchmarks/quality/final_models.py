"""A finished run's final models, rebuilt from its last checkpoint and scored with per-example predictions.

x̄ (the method's own network average, as ``deca-ray eval RUN_DIR`` builds it) is scored on the
validation and / or test split; each client's own model on the clients' subset of the test split.
Predictions are ``deca_ray.evaluate``'s (label log-likelihood, the run's ``evaluation.scoring``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from benchmarks.quality.held_out import HeldOut, Parts
from benchmarks.quality.scoring import score_from_layer
from deca_ray.algorithm.blocks import layer_of
from deca_ray.evaluate import Scoring, classification_metrics, label_predictions
from deca_ray.models import load_tokenizer
from deca_ray.product.assemble import load_named, network_model
from deca_ray.product.run_source import AVERAGE_MODEL, open_run


def score_run(run_dir: Path, held: HeldOut, parts: Parts, *, validation: bool, clients: bool) -> dict[str, Any]:
    """``{"average": {split: scores}, "clients": [{"client": i, **scores}]}``, scores with their predictions."""
    run = open_run(run_dir)
    config = run.config
    average = run.trained_state(AVERAGE_MODEL)
    check_above(average, held.states.layer)
    model = network_model(config, average, load_tokenizer(config.model))
    scoring = config.evaluation.scoring
    splits = {"validation": parts.validation} if validation else {}
    scores: dict[str, Any] = {"average": {name: score_part(model, held, part, scoring)
                                          for name, part in (splits | {"test": parts.test}).items()},
                              "clients": []}
    if clients:
        for client in run.clients:
            load_named(model, run.client_state(client))  # every client trains the same tensors: all replaced
            scores["clients"].append({"client": client, **score_part(model, held, parts.clients, scoring)})
    return scores


def score_part(model: torch.nn.Module, held: HeldOut, part: slice, scoring: Scoring) -> dict[str, Any]:
    examples, states = held.part(part)
    sums = score_from_layer(model, examples, held.label_answer_ids, states)
    return scores_of(sums, held, part, scoring)


def scores_of(sums: torch.Tensor, held: HeldOut, part: slice, scoring: Scoring) -> dict[str, Any]:
    """Accuracy, macro-F1 and each example's predicted label, from summed label log-likelihoods of ``part``."""
    predictions = label_predictions(sums, held.label_answer_ids, scoring)
    metrics = classification_metrics(predictions, torch.tensor(held.labels(part)), len(held.label_answer_ids))
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "predictions": predictions.tolist()}


def check_above(state: Mapping[str, torch.Tensor], layer: int) -> None:
    """Scoring from ``layer`` takes x0's states below it: refuse a model that trained anything lower."""
    below = [name for name in state if (found := layer_of(name)) is None or found < layer]
    if below:
        raise ValueError(f"the run trains {below[:3]} below decoder layer {layer}, where the suite takes x0's hidden "
                         "states; lower the preset's score_from_layer to the lowest layer any run trains")
