"""``decaf variants list|show``: the fusion-variant registry from the command line.

Listing needs no torch: :mod:`decafbench.fusion` imports torch only inside its functions.
"""

from __future__ import annotations

from typing import Optional

import typer


def _format_params(params: dict) -> str:
    return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()) or "-"


def list_command(
    pattern: Optional[str] = typer.Argument(None, help="Glob over variant names, e.g. 'object-*'."),
) -> None:
    """List fusion variants: name, one-line description, parameters with defaults.

    Example:

        decaf variants list
        decaf variants list 'object-*'
    """
    from rich.console import Console
    from rich.table import Table

    from decafbench import fusion

    names = fusion.ordered_names(pattern)  # built-ins in table order (decaf first), then registered ones
    table = Table(title="fusion variants")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("parameters (defaults)")
    for name in names:
        table.add_row(name, fusion.describe(name), _format_params(fusion.defaults(name)))
    console = Console()
    if names:
        console.print(table)
    else:
        console.print(f"no fusion variant matches {pattern!r} (known: {', '.join(fusion.names())})")


def show_command(name: str = typer.Argument(..., help="Variant name (see `decaf variants list`).")) -> None:
    """Show one fusion variant: what it fuses, its fixed settings and parameters.

    Parameters can be overridden by name in configs or sweeps, e.g. sigma=2 clamp=false.

    Example:

        decaf variants show decaf
    """
    from rich.console import Console
    from rich.table import Table

    from decafbench import fusion

    variant = fusion.get(name)
    console = Console()
    console.print(f"[bold]{variant.name}[/bold]: {variant.description}")
    settings = variant.settings()
    if variant.fn is fusion.decaf_fusion:  # the built-ins: say which structure they fix
        views = [v for v in ("video", "frame") if settings[f"use_{v}"]]
        console.print(f"views fused: {' + '.join(views)}; background subtracted: "
                      f"{'yes' if settings['background'] else 'no'}")
    else:
        console.print(f"function: {getattr(variant.fn, '__module__', '?')}.{getattr(variant.fn, '__qualname__', variant.fn)}")
    fixed = {k: v for k, v in variant.fixed.items() if k not in ("use_video", "use_frame", "background")}
    if fixed:
        console.print(f"fixed: {_format_params(fixed)}")
    table = Table(title="parameters")
    table.add_column("name", style="bold")
    table.add_column("default")
    table.add_column("meaning")
    for key, value in variant.defaults().items():
        table.add_row(key, _format_params({key: value}).split("=", 1)[1], variant.help.get(key, ""))
    console.print(table)


def register(app: typer.Typer) -> None:
    variants = typer.Typer(
        help="Fusion variants (method section 5): list and inspect. Example: decaf variants show decaf",
        no_args_is_help=True,
    )
    variants.command("list")(list_command)
    variants.command("show")(show_command)
    app.add_typer(variants, name="variants")
