"""``decaf inspect``: what each model is given, prompt by prompt and view by view.

Samples the key frames of a frame folder as ``decaf run`` does, runs DecAF's four prompts
(:func:`decafbench.prompts.run_dialogue`, the same code as a run) and reports the prompt texts
exactly as given to the chat template, the answers, the choice candidates, the object word
and, per view, the frame size, attention grid, visual tokens, temporal rotary positions and
system prompt (:meth:`decafbench.adapters.base.Adapter.layout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_paths(folder: Path) -> list[Path]:
    """Image files of a frame folder in natural name order; none is a one-line error."""
    from decafbench.benchmarks.formats import natural_key
    from decafbench.errors import InputError

    if not folder.is_dir():
        raise InputError("missing frames folder", folder)
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: natural_key(p.stem))
    if not paths:
        raise InputError(f"no {'/'.join(IMAGE_SUFFIXES)} frames in the folder", folder)
    return paths


def inspect_model(model: str, frames: Path, expression: str, *, prompt_version: str = "v0",
                  model_args: dict | None = None, num_frames: int = 16, dtype: str = "auto", device: str = "cpu",
                  max_new_tokens: int = 128, adapter=None) -> dict:
    """The inspection report as a JSON-ready dict (``adapter``: an already built one, for reuse)."""
    from decafbench.adapters.registry import create_adapter, get_adapter_class, parse_adapter_name
    from decafbench.modelargs import check_model_args
    from decafbench.pipeline import key_frame_indices, load_frames
    from decafbench.prompts import get_prompts, normalize_expression, run_dialogue

    prompts = get_prompts(prompt_version)
    paths = frame_paths(frames)
    idx = key_frame_indices(len(paths), num_frames)
    key_paths = [paths[i] for i in idx]
    images = load_frames(key_paths)
    normalize_expression(expression)  # a bad expression fails before the model loads
    family, _ = parse_adapter_name(model)
    args = check_model_args(get_adapter_class(family), model_args or {}, family)
    if adapter is None:
        from decafbench.adapters.common import prefix_reuse_default, resolve_dtype

        dt = resolve_dtype(dtype, device)  # as decaf run: prefix reuse only where it keeps outputs
        adapter = create_adapter(model, dtype=dt, device=device, prefix_reuse=prefix_reuse_default(dt), **args)
    video, frame = adapter.open(images, "video"), adapter.open(images, "frame")
    d = run_dialogue(adapter, video, frame, expression, prompts, max_new_tokens)
    views = {}
    for name, session in (("video", video), ("frame", frame)):
        try:
            views[name] = adapter.layout(session, d.prompts["object"]).to_dict()
        except NotImplementedError as exc:
            views[name] = {"error": str(exc)}
    spec = adapter.spec()
    r = d.results
    return {
        "model": model, "family": spec.family, "checkpoint": spec.checkpoint, "adapter_config": spec.config,
        "model_args": args, "prompt_version": prompt_version, "max_new_tokens": max_new_tokens,
        "frames": {"folder": str(frames), "count": len(paths), "key_frames": [p.name for p in key_paths],
                   "key_frame_indices": idx, "original_size": [images[0].height, images[0].width]},
        "expression": expression, "expression_normalized": d.expression,
        "prompts": dict(d.prompts),
        "answers": {"object_video": r["object_video"].texts, "object_frame": r["object_frame"].texts,
                    "choice": d.choice_answer, "background_video": r["background_video"].texts,
                    "background_frame": r["background_frame"].texts},
        "candidates": d.candidates, "object_word": d.object_word,
        "views": views,
    }


def print_report(report: dict, console) -> None:
    from rich.panel import Panel
    from rich.table import Table

    console.print(f"[bold]{report['model']}[/bold]  prompts {report['prompt_version']}  "
                  f"{len(report['frames']['key_frames'])} key frames of {report['frames']['count']} "
                  f"({report['frames']['original_size'][0]}x{report['frames']['original_size'][1]})")
    table = Table(title="model input per view")
    for col in ("view", "frame size HxW", "grid t,h,w", "visual tokens", "temporal positions", "system prompt"):
        table.add_column(col, overflow="fold")
    for name, v in report["views"].items():
        if "error" in v:
            table.add_row(name, "-", "-", "-", "-", f"[red]{v['error']}[/red]")
            continue
        sys_prompt = "(template default)" if v["system_prompt"] is None else v["system_prompt"]
        temporal = "-" if v["temporal_positions"] is None else " ".join(map(str, v["temporal_positions"]))
        table.add_row(name, "x".join(map(str, v["frame_size"])), ",".join(map(str, v["grid"])), str(v["visual_tokens"]),
                      temporal, sys_prompt)
    console.print(table)
    for key in ("object", "choice", "background"):
        console.print(Panel(_plain(report["prompts"][key]), title=f"{key} prompt (user message)", title_align="left"))
    a = report["answers"]
    console.print(f"answers: video {a['object_video']!r}; frames {a['object_frame']!r}", markup=False)
    console.print(f"candidates: {','.join(report['candidates'])!r} -> choice {a['choice']!r} -> object word "
                  f"{report['object_word']!r}", markup=False)


def _plain(text: str):
    from rich.text import Text

    return Text(text)


def inspect_command(
    model: str = typer.Option("qwen2-vl:tiny", "--model", "-m", help="ADAPTER:CHECKPOINT (tiny, a folder or a hub id)."),
    frames: Path = typer.Option(..., "--frames", help="Folder of one video's frames (.jpg/.jpeg/.png, natural order)."),
    expression: str = typer.Option(..., "--expression", "-e", help="The referring expression or question."),
    prompts: str = typer.Option("v0", "--prompts", help="Prompt wording: v0 (official) or the ablations v1..v3."),
    model_args: Optional[str] = typer.Option(None, "--model-args", help="Family settings K=V,... (e.g. video_tokens_per_frame=400,fps=2)."),
    num_frames: int = typer.Option(16, "--num-frames", help="Key frames sampled as decaf run does."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Greedy answer length limit (official 128)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report as JSON here."),
) -> None:
    """Show what the model is given: prompt texts, answers, candidates, and per view the frame
    size, attention grid, visual tokens, temporal rotary positions and system prompt.

    Example:

        decaf inspect --model qwen2-vl:tiny-2.5 --frames ../shared/data/bedroom \\
            --expression "the girl in the blue skirt jumping on the bed" --out inspect.json
        decaf inspect -m qwen2-vl:/models/Qwen2.5-VL-7B-Instruct --frames FRAMES -e "the boy" \\
            --model-args video_tokens_per_frame=400 --device cuda
    """
    import json

    from rich.console import Console

    from decafbench.errors import InputError
    from decafbench.modelargs import parse_model_args
    from decafbench.runstore import atomic_write_text

    if num_frames < 1:
        raise InputError(f"--num-frames must be >= 1, got {num_frames}")
    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    console = Console()
    with Console(stderr=True).status("loading the model and running the four prompts"):
        report = inspect_model(model, frames, expression, prompt_version=prompts, model_args=parse_model_args(model_args),
                               num_frames=num_frames, dtype=dtype, device=device, max_new_tokens=max_new_tokens)
    print_report(report, console)
    if out is not None:
        atomic_write_text(out, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        console.print(f"report: {out}")


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
