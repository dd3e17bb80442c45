"""``deca-ray bench system``: the command-line side of the benchmarks (the only place that prints)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deca_ray.bench.results import DEFAULT_RESULTS_DIR

DEFAULT_MARKDOWN = Path("BENCHMARKS.md")


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``bench system`` on the main parser's sub-commands."""
    bench = commands.add_parser("bench", help="measure deca_ray and write result files + BENCHMARKS.md")
    kinds = bench.add_subparsers(required=True, metavar="BENCHMARK")
    system = kinds.add_parser("system", help="runtime overhead, exchange, traffic, memory and scale ratios (issue 5)")
    system.add_argument("--quick", action="store_true",
                        help="tiny model, few repeats, 2 and 4 clients (development and tests; ~1 min on 2 cores)")
    system.add_argument("--reference-threads", type=int, default=None, metavar="N",
                        help="torch threads of the in-process reference loop (default: all cores)")
    system.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR,
                        help=f"where the result JSON goes (default: {DEFAULT_RESULTS_DIR})")
    system.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN,
                        help=f"file to render the newest result into (default: {DEFAULT_MARKDOWN})")
    system.add_argument("--no-render", action="store_true", help="write the JSON only")
    system.add_argument("--render-only", action="store_true",
                        help="measure nothing: render the newest result of --results-dir into --markdown")
    system.set_defaults(handler=_bench_system)
    quality = kinds.add_parser("quality", help="every method and ablation on non-IID BBC (issue 4, section Q)")
    quality.add_argument("--quick", action="store_true",
                         help="tiny model, four runs, in-process clients (development and tests; seconds)")
    quality.add_argument("--only", action="append", default=[], metavar="RUN",
                         help="run just these runs of the preset (repeatable), e.g. --only deca --only dec_lora")
    quality.add_argument("--into", type=Path, metavar="SUITE_DIR",
                         help="re-run the --only runs inside this finished suite (the replaced files move to superseded/)")
    quality.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    quality.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    quality.add_argument("--no-render", action="store_true", help="write the JSON files only")
    quality.add_argument("--render-only", action="store_true",
                         help="run nothing: render the newest quality suite of --results-dir into --markdown")
    quality.set_defaults(handler=_bench_quality)
    gpu = kinds.add_parser("gpu-report", help="render the newest GPU result (scripts/gpu_check.sh) into BENCHMARKS.md")
    gpu.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    gpu.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    gpu.set_defaults(handler=_bench_gpu_report)


def _bench_system(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from deca_ray.bench.presets import FULL, QUICK
    from deca_ray.bench.report import render_newest

    if not args.render_only:
        from deca_ray.bench.system import run_system_benchmark  # heavy imports (torch, ray) only here

        preset = replace(QUICK if args.quick else FULL, reference_torch_threads=args.reference_threads)
        path = run_system_benchmark(preset, args.results_dir)
        print(f"result: {path}")
        _print_ratios(path)
    if not args.no_render:
        used = render_newest(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _bench_quality(args: argparse.Namespace) -> int:
    from deca_ray.bench.quality_presets import FULL, QUICK

    from deca_ray.errors import ConfigError

    preset = QUICK if args.quick else FULL
    unknown = sorted(set(args.only) - {run.name for run in preset.runs})
    if unknown:
        raise ConfigError(f"--only {unknown}: no such run; the {preset.name} preset has "
                          f"{', '.join(run.name for run in preset.runs)}")
    if not args.render_only:
        from deca_ray.bench.quality import run_quality_benchmark

        if args.into is not None and not args.only:
            raise ConfigError("--into re-runs only what --only names; add --only RUN")
        only = (lambda run: run.name in args.only) if args.only else None
        suite = run_quality_benchmark(preset, args.results_dir, only=only, into=args.into)
        print(f"results: {suite}")
    if not args.no_render:
        from deca_ray.bench.quality_report import render_newest_quality

        used = render_newest_quality(args.results_dir, args.markdown)
        print(f"rendered {used} into {args.markdown}")
    return 0


def _bench_gpu_report(args: argparse.Namespace) -> int:
    from deca_ray.bench.gpu_report import render_newest_gpu

    used = render_newest_gpu(args.results_dir, args.markdown)
    print(f"rendered {used} into {args.markdown}")
    return 0


def _print_ratios(path: Path) -> None:
    sections = json.loads(path.read_text())["sections"]
    for entry in sections.values():
        met = {True: "met", False: "MISSED", None: "-"}[entry["met"]]
        print(f"  {entry['label']}: {entry['ratio']:.4g} (target {entry['rule']} {entry['target']}) {met}")
