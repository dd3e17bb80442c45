"""Command line: ``deca-ray run CONFIG [--set key=value ...]`` (also ``python -m deca_ray``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from deca_ray.errors import ConfigError, DecaError, RunInterrupted
from deca_ray.user_errors import describe_user_error

logger = logging.getLogger("deca_ray")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.handler(args)
    except RunInterrupted as stop:  # SIGINT / SIGTERM: where it stopped and how to resume
        print(f"\n{stop}", file=sys.stderr)
        return stop.exit_code
    except DecaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a user's mistake (a path, a permission, a file's encoding) exits 2; a bug raises
        message = describe_user_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deca-ray", description="Decentralized block-wise Adam (DECA) on Ray")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="train one experiment from a YAML config")
    run.add_argument("config", nargs="?", help="YAML file (default: the built-in defaults)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue RUN_DIR from its last checkpoint (uses its config.yaml); a complete run only "
                          "with more rounds (--set algorithm.rounds=N)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set algorithm.lr=1e-4 (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    show = commands.add_parser("config", help="print the fully resolved config and exit")
    show.add_argument("config", nargs="?")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(handler=_show_config)
    methods = commands.add_parser("methods", help="list the training methods algorithm.type can name")
    methods.set_defaults(handler=_list_methods)
    from deca_ray.product.command import add_model_commands  # export / eval / generate (light imports only)

    add_model_commands(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from deca_ray.config import load_config

    resume_dir = Path(args.resume) if args.resume else None
    if resume_dir is not None:
        if args.config:
            raise ConfigError("pass either CONFIG or --resume RUN_DIR (a resumed run uses RUN_DIR/config.yaml)")
        if not resume_dir.is_dir():
            raise ConfigError(f"--resume {resume_dir}: no such directory; pass a run directory (runs/<name>-<time>)")
        if not (resume_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {resume_dir}: not a run directory (it has no config.yaml); pass one of "
                              "runs/<name>-<time>")
    config = load_config(resume_dir / "config.yaml" if resume_dir else args.config, args.overrides)
    from deca_ray.progress import ProgressReporter, format_summary  # heavy imports after validation
    from deca_ray.runner import run_experiment

    with ProgressReporter(config, enabled=not args.no_progress) as progress:
        result = run_experiment(config, on_step=progress.update, on_start=progress.start, resume_dir=resume_dir)
    print(format_summary(result))
    return 0


def _show_config(args: argparse.Namespace) -> int:
    from deca_ray.config import dump_config, load_config

    print(dump_config(load_config(args.config, args.overrides)), end="")
    return 0


def _list_methods(args: argparse.Namespace) -> int:
    from deca_ray.methods import get_method, method_names

    for name in method_names():
        print(f"{name:18} {get_method(name).summary}")
    return 0


def _setup_logging(verbose: bool) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "filelock", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
