"""Offline building blocks for ``<family>:tiny`` checkpoints (tests, smoke runs, CI).

No weights or tokenizer files can be downloaded in the harness's test environment, yet the
adapters must exercise the real architecture classes end to end. The tiny factories
therefore build (1) a small byte-level BPE tokenizer trained here on a fixed corpus of
English words that covers every prompt wording, with the family's special tokens added as
real special tokens, and (2) a randomly initialised model of the real architecture under a
fixed seed. Both are deterministic: the same call gives the same vocabulary and weights.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

#: Words the built-in corpus always contains: prompt vocabulary (all prompt versions),
#: object/background class words and chat-template words, so tokenization stays short.
_CORPUS_WORDS = """
the a an of to in on at by for with from and or not is are was were be been it its this that
these those which what who whom whose where when why how one single word phrase main primary
subject agent object objects expression refers refer referring focus focusing on answer only
give given name names named most likely class label labels category candidate candidates
list following among choose pick select best describe description background scene scenery
video image frame frames excluding exclude except without any all other than please just
respond reply output short brief identify identifies determine determines central target
setting environment surroundings behind around place location mentioned described noun
e g cat person dog horse car bird man woman boy girl child people cow sheep bike bicycle
motorcycle bus truck train boat airplane ball tree grass road street water sky field room
floor wall table chair sofa bed kitchen park beach snow sand forest mountain river city
building house indoor outdoor stage track court left right top bottom front back big small
red blue green white black yellow brown running walking jumping sitting standing holding
riding playing moving eating looking turning first second last side near far next
system user assistant you helpful
""".split()

_PUNCT = list(".,?!:;'\"()[]{}-_/<>|=+*#@&%$0123456789")


def _corpus(extra_words: Iterable[str]) -> list[str]:
    """A fixed training corpus: each word alone, capitalised, and in short sentences."""
    words = list(dict.fromkeys([*_CORPUS_WORDS, *[w for w in extra_words if w]]))
    lines: list[str] = []
    for w in words:
        lines.append(w)
        lines.append(w.capitalize())
        lines.append(f" {w} {w}.")
    rng = random.Random(0)  # fixed: the corpus (and so the vocabulary) is deterministic
    for _ in range(400):
        lines.append(" ".join(rng.choice(words) for _ in range(8)) + rng.choice([".", "?", ","]))
    lines.append(" ".join(_PUNCT))
    return lines


def build_tokenizer(
    special_tokens: list[str],
    *,
    chat_template: str | None = None,
    extra_words: Iterable[str] = (),
    vocab_size: int = 2000,
) -> "PreTrainedTokenizerFast":
    """Train a deterministic byte-level BPE tokenizer locally (no network).

    ``special_tokens`` get the first ids, in order, and are never split (e.g. Qwen's
    ``<|video_pad|>``); ``extra_words`` extend the built-in corpus (e.g. a family's chat
    template words). ``chat_template`` is set on the returned tokenizer. The first special
    token is used as the pad token, and ``<|im_end|>``/``<|endoftext|>`` (when present) as EOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(special_tokens))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(extra_words), trainer=trainer)
    eos = next((t for t in ("<|im_end|>", "<|endoftext|>", "</s>") if t in specials), None)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=specials[0] if specials else None,
        eos_token=eos,
    )
    fast.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in (fast.pad_token, eos)]})
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator (and Python's) for a block, restoring the old state after.

    Tiny factories build their random weights inside ``with seeded(seed):`` so a tiny
    checkpoint is the same model in every process without touching global RNG state.
    """
    import torch

    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)

