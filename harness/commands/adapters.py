"""``decaf adapters list|show``: the MLLM adapters declared through entry points.

Listing reads entry-point metadata only (no torch import); ``show`` imports the adapter
class to print its documentation and ``from_checkpoint`` options.
"""

from __future__ import annotations

from typing import Optional

import typer


def list_command(
    pattern: Optional[str] = typer.Argument(None, help="Glob on adapter names, e.g. 'qwen*'."),
) -> None:
    """List adapters: name, target (module:Class) and the distribution that declares it.

    Example:

        decaf adapters list
        decaf adapters list 'qwen*'
    """
    from rich.console import Console
    from rich.table import Table

    from decafbench.adapters.registry import list_adapters

    table = Table(title="adapters (entry-point group decafbench.adapters)")
    table.add_column("name", no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("distribution")
    for entry in list_adapters(pattern):
        table.add_row(entry.name, entry.target, entry.distribution)
    Console().print(table)


def show_command(
    name: str = typer.Argument(..., help="Adapter family name, e.g. qwen2-vl (a ':checkpoint' suffix is ignored)."),
) -> None:
    """Show one adapter: where it comes from, what it does, its from_checkpoint options.

    Example:

        decaf adapters show qwen2-vl
    """
    import inspect

    from rich.console import Console

    from decafbench.adapters.registry import adapter_entries, get_adapter_class, parse_adapter_name

    family, _ = parse_adapter_name(name)
    cls = get_adapter_class(family)
    entry = adapter_entries()[family]
    console = Console()
    console.print(f"[bold]{entry.name}[/bold]  {entry.target}  ({entry.distribution})")
    doc = inspect.getdoc(cls) or ""
    if doc:
        console.print(doc, markup=False)
    factory = getattr(cls, "from_checkpoint", None)
    if factory is not None:
        console.print(f"from_checkpoint{inspect.signature(factory)}", markup=False)
        fdoc = inspect.getdoc(factory)
        if fdoc:
            console.print(fdoc, markup=False)
    from decafbench.modelargs import accepted_model_args

    known = accepted_model_args(cls)
    if known:
        args = ", ".join(f"{k} ({getattr(t, '__name__', t)})" for k, t in sorted(known.items()))
        console.print(f"model args (--model-args K=V,...): {args}", markup=False)
    console.print(f"usage: create_adapter('{entry.name}:tiny') or a local folder / hub id after the colon", markup=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="MLLM adapters (entry-point group decafbench.adapters).", no_args_is_help=True)
    group.command("list")(list_command)
    group.command("show")(show_command)
    app.add_typer(group, name="adapters")
