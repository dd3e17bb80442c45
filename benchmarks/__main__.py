"""``python -m benchmarks COMMAND`` (repository root): the benchmarks' command line, the only place that prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.markdown import DEFAULT_MARKDOWN
from benchmarks.results import DEFAULT_RESULTS_DIR
from deca_ray.errors import ConfigError, DecaError


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.handler(args)
    except DecaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m benchmarks",
                                   description="measure deca_ray and write result files + BENCHMARKS.md")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = root.add_subparsers(required=True, metavar="BENCHMARK")
    _add_system(commands)
    _add_quality(commands)
    _add_gpu(commands)
    _add_step(commands)
    _add_lab(commands)
    return root


def _add_outputs(command: argparse.ArgumentParser) -> None:
    command.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR,
                         help=f"where result files go and are read from (default: {DEFAULT_RESULTS_DIR})")
    command.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN,
                         help=f"file to render the newest result into (default: {DEFAULT_MARKDOWN})")


def _add_system(commands: argparse._SubParsersAction) -> None:
    system = commands.add_parser("system",
                                 help="runtime overhead, exchange, traffic, memory and scale ratios (section S)")
    system.add_argument("--quick", action="store_true",
                        help="tiny model, few repeats, 2 and 4 clients (development and tests; ~1 min on 2 cores)")
    system.add_argument("--cross-node", action="store_true",
                        help="only the exchange across nodes vs within one, on a local multi-node cluster it starts "
                             "(its own result file and BENCHMARKS.md section)")
    system.add_argument("--reference-threads", type=int, default=None, metavar="N",
                        help="torch threads of the in-process reference loop (default: all cores)")
    _add_outputs(system)
    system.add_argument("--no-render", action="store_true", help="write the JSON only")
    system.add_argument("--render-only", action="store_true",
                        help="measure nothing: render the newest result of --results-dir into --markdown")
    system.set_defaults(handler=_system)


def _add_quality(commands: argparse._SubParsersAction) -> None:
    quality = commands.add_parser("quality", help="every method and ablation on non-IID BBC, lr grids and seeds "
                                                  "(section Q)")
    preset = quality.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="tiny model, few steps, in-process clients: the whole pipeline (development and tests; "
                             "about a minute)")
    preset.add_argument("--confirm", action="store_true",
                        help="the goal's comparisons again on fresh seeds at the rates section Q chose (section "
                             "Q-confirm; a confirm-* suite)")
    quality.add_argument("--phase", action="append", default=[], choices=("grid", "seeds", "ablations"),
                         help="measure only this phase (repeatable; default all, in order): grid = every method on "
                              "its lr grid at seed 0; seeds = the methods' other seeds at the chosen lr; ablations = "
                              "DECA variants at DECA's lr on every seed")
    quality.add_argument("--only", action="append", default=[], metavar="RUN",
                         help="just these runs of the preset (repeatable), e.g. --only deca --only ablation-ring")
    quality.add_argument("--into", type=Path, metavar="SUITE_DIR",
                         help="continue this suite: measure what is missing, skip the results already there")
    quality.add_argument("--rerun", action="store_true",
                         help="with --into and --only: measure those runs again (after a fix); the results they "
                              "replace move to superseded/")
    _add_outputs(quality)
    quality.add_argument("--no-render", action="store_true", help="write the JSON files only")
    quality.add_argument("--render-only", action="store_true",
                         help="run nothing: render the newest suite of the preset's kind (quality-* or confirm-*) "
                              "of --results-dir into --markdown")
    quality.set_defaults(handler=_quality)


def _add_gpu(commands: argparse._SubParsersAction) -> None:
    gpu = commands.add_parser("gpu", help="one DECA client on this machine's GPU against full Adam (section G)")
    gpu.add_argument("out_dir", type=Path, nargs="?", default=DEFAULT_RESULTS_DIR,
                     help=f"where the result JSON goes (default: {DEFAULT_RESULTS_DIR})")
    gpu.add_argument("--steps", type=int, default=8, help="steps per measurement; the first is not timed")
    gpu.add_argument("--batch-size", type=int, default=8)
    gpu.add_argument("--length", type=int, default=256, help="tokens per sequence")
    gpu.set_defaults(handler=_gpu)
    report = commands.add_parser("gpu-report",
                                 help="render the newest GPU result (scripts/gpu_check.sh) into BENCHMARKS.md")
    _add_outputs(report)
    report.set_defaults(handler=_gpu_report)


def _add_step(commands: argparse._SubParsersAction) -> None:
    step = commands.add_parser("step", help="one client's step by phase, FLOP/s ÷ matmul peak, tokens/s, peak RSS")
    preset = step.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="tiny model, two timed rounds (development and tests; seconds)")
    preset.add_argument("--random-weights", action="store_true",
                        help="SmolLM2's shape with random weights on synthetic sequences (a GPU machine without "
                             "the packaged model; bf16 there)")
    step.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default=None,
                      help="weights' dtype (default: bfloat16 on a GPU, float32 on a CPU)")
    step.add_argument("--torch-threads", type=int, default=None, metavar="N",
                      help="torch threads for the steps and the matmul peak (default: the preset's, 2 on a CPU)")
    step.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the quickstart's 4)")
    _add_outputs(step)
    step.add_argument("--no-render", action="store_true", help="write the JSON only")
    step.add_argument("--render-only", action="store_true",
                      help="measure nothing: render the newest step result of --results-dir into --markdown")
    step.set_defaults(handler=_step)


def _add_lab(commands: argparse._SubParsersAction) -> None:
    lab = commands.add_parser("lab", help="every method and DECA variant on a synthetic non-IID task, ≥ 5 seeds")
    lab.add_argument("--quick", action="store_true", help="2 seeds, a smaller task and schedule (seconds; tests)")
    lab.add_argument("--workers", type=int, default=2, metavar="N",
                     help="worker processes running (setting, seed) pairs side by side (default: 2)")
    lab.add_argument("--lr-pilot", action="store_true",
                     help="instead: the learning-rate pilot the lab's rates were read from (lab_lr-<time>.json)")
    _add_outputs(lab)
    lab.add_argument("--no-render", action="store_true", help="write the JSON only")
    lab.add_argument("--render-only", action="store_true",
                     help="run nothing: render the newest lab result of --results-dir into --markdown")
    lab.set_defaults(handler=_lab)


def _setup_logging(verbose: bool) -> None:
    """The same set-up as ``deca-ray run``: the runs a benchmark starts log as a normal run would."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------- handlers (heavy imports only here)


def _system(args: argparse.Namespace) -> int:
    from dataclasses import replace

    if args.cross_node:
        return _cross_node(args)
    from benchmarks.system.presets import FULL, QUICK
    from benchmarks.system.report import render_newest_system

    if not args.render_only:
        from benchmarks.system.run import run_system_benchmark

        preset = replace(QUICK if args.quick else FULL, reference_torch_threads=args.reference_threads)
        path = run_system_benchmark(preset, args.results_dir)
        print(f"result: {path}")
        _print_ratios(path)
    if not args.no_render:
        used = render_newest_system(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _cross_node(args: argparse.Namespace) -> int:
    from benchmarks.system.crossnode_report import render_newest_crossnode

    if not args.render_only:
        from benchmarks.system.crossnode import FULL, QUICK, run_crossnode_benchmark

        path = run_crossnode_benchmark(QUICK if args.quick else FULL, args.results_dir)
        entry = json.loads(path.read_text())["section"]
        print(f"result: {path}\n  {entry['label']}: {entry['ratio']:.3g}")
    if not args.no_render:
        used = render_newest_crossnode(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _quality(args: argparse.Namespace) -> int:
    from benchmarks.quality.presets import CONFIRM, FULL, PHASES, QUICK

    preset = QUICK if args.quick else CONFIRM if args.confirm else FULL
    unknown = sorted(set(args.only) - {run.name for run in preset.runs})
    if unknown:
        raise ConfigError(f"--only {unknown}: no such run; the {preset.name} preset has "
                          f"{', '.join(run.name for run in preset.runs)}")
    if args.rerun and (args.into is None or not args.only):
        raise ConfigError("--rerun measures again what --only names inside the suite --into names; add both")
    if not args.render_only:
        from benchmarks.quality.run import run_quality_benchmark

        suite = run_quality_benchmark(preset, args.results_dir, phases=args.phase or PHASES, only=args.only or None,
                                      into=args.into, rerun=args.rerun)
        print(f"results: {suite}")
    if not args.no_render:
        from benchmarks.quality.report import render_newest_quality

        used = render_newest_quality(args.results_dir, args.markdown, preset.kind)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _gpu(args: argparse.Namespace) -> int:
    from benchmarks.gpu.run import run_gpu_benchmark

    path = run_gpu_benchmark(args.out_dir, steps=args.steps, batch_size=args.batch_size, length=args.length)
    print(json.dumps(json.loads(path.read_text())["ratios"], indent=2))
    print(f"wrote {path}")
    return 0


def _gpu_report(args: argparse.Namespace) -> int:
    from benchmarks.gpu.report import render_newest_gpu

    used = render_newest_gpu(args.results_dir, args.markdown)
    print(f"rendered {used} into {args.markdown}")
    return 0


def _step(args: argparse.Namespace) -> int:
    from benchmarks.step.report import render_newest_step

    if not args.render_only:
        from dataclasses import replace

        from benchmarks.step.presets import FULL, QUICK, RANDOM_WEIGHTS
        from benchmarks.step.run import run_step_benchmark

        preset = QUICK if args.quick else RANDOM_WEIGHTS if args.random_weights else FULL
        changes = {"dtype": args.dtype, "torch_threads": args.torch_threads, "batch_size": args.batch_size}
        preset = replace(preset, **{name: value for name, value in changes.items() if value is not None})
        path = run_step_benchmark(preset, args.results_dir)
        print(f"result: {path}")
        summary = json.loads(path.read_text())["summary"]
        print(f"  top block FLOP/s ÷ matmul peak ({summary['clock']} time): {summary['top_ratio_to_peak']:.3g} "
              f"(target ≥ {summary['top_target']}); bottom block: {summary['bottom_ratio_to_peak']:.3g}")
    if not args.no_render:
        used = render_newest_step(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from benchmarks.lab.presets import FULL, QUICK, lr_pilot
    from benchmarks.lab.report import render_newest_lab

    preset = QUICK if args.quick else FULL
    if args.lr_pilot:
        from benchmarks.lab.report import pilot_lines
        from benchmarks.lab.run import run_lab

        path = run_lab(lr_pilot(preset), args.results_dir, workers=args.workers)
        print("\n".join(pilot_lines(json.loads(path.read_text()))))
        print(f"result: {path}")
        return 0
    if not args.render_only:
        from benchmarks.lab.run import run_lab

        print(f"result: {run_lab(preset, args.results_dir, workers=args.workers)}")
    if not args.no_render:
        used = render_newest_lab(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _print_ratios(path: Path) -> None:
    sections = json.loads(path.read_text())["sections"]
    for entry in sections.values():
        met = {True: "met", False: "MISSED", None: "-"}[entry["met"]]
        print(f"  {entry['label']}: {entry['ratio']:.4g} (target {entry['rule']} {entry['target']}) {met}")


if __name__ == "__main__":
    sys.exit(main())
