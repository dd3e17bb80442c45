"""``deca-ray export | eval | generate``: parsers and handlers (heavy imports happen inside the handlers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deca_ray.product.run_source import AVERAGE


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Register the three sub-commands on the CLI's sub-parser set."""
    export = commands.add_parser("export", help="write a run's model as a Hugging Face directory")
    export.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory (runs/<name>-<time>/)")
    export.add_argument("--model", default=AVERAGE, metavar="average|client:N",
                        help="the network-average model (default) or client N's own model")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="new (or empty) directory to write")
    export.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="weights' dtype (default: the run's model.dtype)")
    export.set_defaults(handler=_export)

    evaluate = commands.add_parser("eval", help="held-out metrics of a run or a model directory")
    evaluate.add_argument("target", metavar="MODEL_OR_RUN_DIR", type=Path)
    evaluate.add_argument("--model", default=AVERAGE, metavar="average|client:N", help="for a run directory")
    evaluate.add_argument("--data", metavar="SOURCE", help="shorthand for --set data.source=SOURCE")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override the data / evaluation config, e.g. --set evaluation.max_examples=50")
    evaluate.add_argument("--json", action="store_true", help="print the result as one JSON object")
    evaluate.set_defaults(handler=_evaluate)

    generate = commands.add_parser("generate", help="generate text from a Hugging Face model directory")
    generate.add_argument("model_dir", metavar="MODEL_DIR", type=Path)
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sampled")
    generate.add_argument("--seed", type=int, default=None, help="seed for sampling")
    generate.add_argument("--no-chat-template", action="store_true", help="feed the prompt as raw text")
    generate.set_defaults(handler=_generate)


def _export(args: argparse.Namespace) -> int:
    from deca_ray.product.export import export_run
    from deca_ray.product.run_source import ModelChoice

    out = export_run(args.run_dir, args.out, ModelChoice.parse(args.model), args.dtype)
    print(f"exported to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from deca_ray.product.evaluation import evaluate_path, format_metrics
    from deca_ray.product.run_source import ModelChoice

    overrides = ([f"data.source={args.data}"] if args.data else []) + args.overrides
    result = evaluate_path(args.target, overrides, ModelChoice.parse(args.model))
    print(json.dumps(result) if args.json else format_metrics(result))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from deca_ray.product.generation import GenerationRequest, generate

    request = GenerationRequest(args.prompt, args.max_new_tokens, args.temperature, args.seed,
                                chat_template=not args.no_chat_template)
    print(generate(args.model_dir, request))
    return 0
