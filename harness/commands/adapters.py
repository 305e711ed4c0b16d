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


def describe_docstring(doc: str) -> list[str]:
    """Paragraphs of a docstring as plain text: line breaks inside a paragraph joined, reST
    roles and literals (``:meth:`spec```, ````tiny````) reduced to their text."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return [" ".join(line.strip() for line in para.splitlines()) for para in text.split("\n\n") if para.strip()]


def option_rows(factory) -> list[tuple[str, str, str]]:
    """(name, type, default) of a constructor's keyword options, read from its signature."""
    import inspect

    import dataclasses

    rows = []
    for p in inspect.signature(factory).parameters.values():
        if p.name in ("self", "cls", "checkpoint") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if "AdapterOptions" in str(p.annotation):  # the options object: list its fields
            from decafbench.adapters.base import AdapterOptions

            for f in dataclasses.fields(AdapterOptions):
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
                rows.append((f.name, str(f.type).strip("'\"").replace("typing.", ""), repr(default)))
            continue
        ann = "" if p.annotation is p.empty else str(p.annotation).strip("'\"").replace("typing.", "")
        default = "required" if p.default is p.empty else repr(p.default)
        rows.append((p.name, ann, default))
    return rows


def show_command(
    name: str = typer.Argument(..., help="Adapter family name, e.g. qwen2-vl (a ':checkpoint' suffix is ignored)."),
) -> None:
    """Show one adapter: where it comes from, what it does, its options.

    Example:

        decaf adapters show qwen2-vl
    """
    import inspect

    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from decafbench.adapters.registry import adapter_entries, get_adapter_class, parse_adapter_name

    family, _ = parse_adapter_name(name)
    cls = get_adapter_class(family)
    entry = adapter_entries()[family]
    console = Console(highlight=False)
    console.print(Text(entry.name, style="bold"), Text(f"  {entry.target}  (from {entry.distribution})", style="dim"))
    factory = getattr(cls, "from_checkpoint", None)
    paras = describe_docstring(inspect.getdoc(cls) or "")
    if factory is not None:
        paras += describe_docstring(inspect.getdoc(factory) or "")
    for para in paras:
        console.print(Padding(Text(para), (1, 0, 0, 2)))
    if factory is not None:
        rows = option_rows(factory)
        if rows:
            table = Table(title="options (AdapterOptions, from the run settings)", title_justify="left",
                          show_edge=False)
            for col in ("name", "type", "default"):
                table.add_column(col, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print()
            console.print(table)
    from decafbench.modelargs import accepted_model_args

    known = accepted_model_args(cls)
    if known:
        args = ", ".join(f"{k} ({getattr(t, '__name__', t)})" for k, t in sorted(known.items()))
        console.print()
        console.print(Text(f"model args (--model-args K=V,...): {args}"))
    console.print()
    console.print(Text(f"use: decaf run --model {entry.name}:tiny   (or {entry.name}:LOCAL_DIR, "
                       f"{entry.name}:HUB_ID)"))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="MLLM adapters (entry-point group decafbench.adapters).", no_args_is_help=True)
    group.command("list")(list_command)
    group.command("show")(show_command)
    app.add_typer(group, name="adapters")
