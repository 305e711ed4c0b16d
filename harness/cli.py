"""The ``decaf`` command line (Typer).

Start-up stays light: command modules import numpy/pandas/torch inside the command bodies,
so ``decaf --help`` or ``decaf evaluate`` never imports torch or transformers.
Each module in :mod:`decafbench.commands` exposes ``register(app)``.
"""

from __future__ import annotations

import functools
import importlib
import sys

import typer

from .errors import InputError

COMMAND_MODULES = (
    "decafbench.commands.evaluate",
    "decafbench.commands.benchmarks",
    "decafbench.commands.stats",
    "decafbench.commands.power",
    "decafbench.commands.method",
    "decafbench.commands.adapters",
    "decafbench.commands.run",
    "decafbench.commands.inspect",
    "decafbench.commands.report",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="decaf",
        help="decafbench: run and evaluate DecAF (training-free video reasoning segmentation) "
        "across MLLM adapters, fusion variants and benchmarks.",
        no_args_is_help=False,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for name in COMMAND_MODULES:
        # A command module that cannot be imported is a bug (a broken install or a typo), not a
        # missing feature: let the ImportError surface instead of dropping the commands quietly.
        module = importlib.import_module(name)
        module.register(app)
    _wrap_errors(app)
    return app


def _one_line_errors(func):
    """Bad input: print the one-line message and exit 2 (also under typer's test runner)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _wrap_errors(app: typer.Typer) -> None:
    for command in app.registered_commands:
        if command.callback is not None and not hasattr(command.callback, "__wrapped__"):
            command.callback = _one_line_errors(command.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _wrap_errors(group.typer_instance)


def main(argv: list[str] | None = None) -> None:
    app = build_app()
    try:
        app(args=argv, prog_name="decaf", standalone_mode=True)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
