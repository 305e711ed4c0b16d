"""The DecAF paper's *published* J&F numbers, as data.

Source: Han et al., "Decomposed Attention Fusion in MLLMs for Training-Free Video Reasoning
Segmentation", arXiv 2510.19592 v2 (ICLR 2026), as restated in section 9 of the method page.
16 key frames, SAM2-hiera-large, default settings. These are numbers a user should
reproduce with real checkpoints; they were NOT produced by this harness (no weights are
available here) and must never be shown as its output. ``output`` is "attn" for the
coarse attention masks and "sam" for the SAM2-refined masks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SOURCE = "arXiv 2510.19592 v2 (DecAF paper), published J&F in percent; not harness output"


@dataclass(frozen=True)
class PublishedResult:
    mllm: str
    benchmark: str  # a registry name ("ref-davis17", "reasonvos", "revos", "mevis", "ref-youtube-vos")
    output: str  # "attn" (coarse masks) or "sam" (SAM2 masks)
    jf: float  # J&F in percent, as published
    setting: str = "full method"  # the ablation row, where one applies

    def to_dict(self) -> dict:
        return asdict(self)


def _main_table() -> list[PublishedResult]:
    rows = {  # MLLM: (Ref-DAVIS attn, sam, ReasonVOS attn, sam, ReVOS-All attn, sam)
        "Qwen2.5-VL-7B": (25.3, 75.2, 20.6, 63.9, 20.2, 54.2),
        "Qwen2-VL-7B": (20.0, 64.1, 13.8, 52.5, 15.2, 45.3),
        "InternVL3-8B": (20.7, 62.8, 18.4, 58.9, 16.7, 47.4),
        "LLaVA-OV-7B": (21.6, 59.4, 17.2, 52.8, 15.6, 40.0),
    }
    out = []
    for mllm, v in rows.items():
        for k, bench in enumerate(("ref-davis17", "reasonvos", "revos")):
            out.append(PublishedResult(mllm, bench, "attn", v[2 * k]))
            out.append(PublishedResult(mllm, bench, "sam", v[2 * k + 1]))
    return out


def _sam_only() -> list[PublishedResult]:
    rows = {  # MLLM: (Ref-DAVIS, ReasonVOS, ReVOS-All), SAM2 masks
        "Qwen2-VL-2B": (41.8, 47.6, 30.2),
        "Qwen2.5-VL-3B": (58.1, 52.9, 39.7),
        "InternVL3-2B": (53.5, 54.1, 38.1),
        "InternVL3-14B": (63.3, 65.6, 47.0),
    }
    out = [PublishedResult(m, b, "sam", x) for m, v in rows.items()
           for b, x in zip(("ref-davis17", "reasonvos", "revos"), v)]
    out += [PublishedResult("Qwen2.5-VL-7B", "mevis", "sam", 48.1),
            PublishedResult("Qwen2.5-VL-7B", "ref-youtube-vos", "sam", 59.9)]
    return out


def _ablations() -> list[PublishedResult]:
    m = "Qwen2.5-VL-7B"
    pairs = {  # setting: (Ref-DAVIS, ReasonVOS), SAM2 masks
        "object map only": (61.9, 58.4),
        "video view only": (65.9, 58.6),
        "frame view only": (67.4, 58.2),
        "no multi-scale frame view": (72.4, 60.5),
        "head weighting mean (standard rollout)": (68.4, 56.8),
        "head weighting max (Rollout-Max)": (72.9, 60.9),
        "no attention-consistency score": (60.0, 52.9),
    }
    out = []
    for setting, (davis, reason) in pairs.items():
        out.append(PublishedResult(m, "ref-davis17", "sam", davis, setting))
        out.append(PublishedResult(m, "reasonvos", "sam", reason, setting))
    for start, jf in ((7, 69.2), (14, 75.2), (21, 73.6)):
        out.append(PublishedResult(m, "ref-davis17", "sam", jf, f"rollout start layer {start} of 28"))
    return out


def published_results() -> list[PublishedResult]:
    """Every published number: main table, SAM-only models, ablations."""
    return _main_table() + _sam_only() + _ablations()


def published_jf(mllm: str, benchmark: str, output: str = "sam", setting: str = "full method") -> float | None:
    """One published J&F (percent), or None when the paper gives none."""
    for r in published_results():
        if (r.mllm, r.benchmark, r.output, r.setting) == (mllm, benchmark, output, setting):
            return r.jf
    return None
