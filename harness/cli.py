"""The ``decaf`` command line (Typer).

Start-up stays light: command modules import numpy/pandas/torch inside the command bodies,
so ``decaf --help`` or ``decaf evaluate`` never imports torch or transformers.
Each module in :mod:`decafbench.commands` exposes ``register(app)``.

Help is rendered by rich, which reads ``[word]`` as markup and silently drops it; our help
texts never use markup, so :func:`build_command` escapes every help text (a pasted sweep
example keeps its ``[run]`` / ``[grid]`` / ``[sam2]`` tables), hides the type column of
on/off flags (``<bool>`` says nothing), and gives every command ``-h`` besides ``--help``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
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


HELP_OPTION_NAMES = ["-h", "--help"]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("decafbench")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            v = "unknown (not installed)"
        typer.echo(f"decaf (decafbench) {v}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="decaf",
        help="decafbench: run and evaluate DecAF (training-free video reasoning segmentation) "
        "across MLLM adapters, fusion variants and benchmarks.",
        no_args_is_help=False,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": HELP_OPTION_NAMES},
    )

    @app.callback()
    def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                           is_eager=True, callback=_version)) -> None:
        """decafbench: run and evaluate DecAF (training-free video reasoning segmentation) across
        MLLM adapters, fusion variants and benchmarks. Every command has -h / --help with an example."""

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


def build_command():
    """The click command tree of :func:`build_app`, with help texts made safe for rich (see
    the module docstring)."""
    import click

    command = typer.main.get_command(build_app())
    _polish(command, click.Context(command, info_name="decaf", help_option_names=HELP_OPTION_NAMES))
    return command


def _polish(command, ctx) -> None:
    from rich.markup import escape

    if command.help:
        if not getattr(command, "short_help", None):  # the commands list: the first paragraph, one line
            first = inspect.cleandoc(command.help).split("\n\n")[0]
            command.short_help = escape(" ".join(first.split()))
        command.help = escape(command.help)
    elif getattr(command, "short_help", None):
        command.short_help = escape(command.short_help)
    params = list(command.params)
    help_option = command.get_help_option(ctx)  # created lazily and cached by click
    if help_option is not None and help_option not in params:
        params.append(help_option)
    for param in params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""  # an on/off switch has no value to describe
    for name, sub in getattr(command, "commands", {}).items():
        _polish(sub, ctx.__class__(sub, parent=ctx, info_name=name))


def main(argv: list[str] | None = None) -> None:
    command = build_command()
    try:
        command.main(args=argv, prog_name="decaf", standalone_mode=True)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
