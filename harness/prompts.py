"""Prompt wording of DecAF's three prompts, as a versioned registry.

The paper ablates four wordings per prompt, so wording is data, not a literal in the
pipeline: a :class:`PromptSet` holds the object, object-choice and background templates,
and versions ``v0``..``v3`` name them. ``v0`` follows the published default wording as
restated in the method page (section 2); ``v1``..``v3`` are plausible rewordings written
for this harness (not the paper's exact alternatives, which are not public here).
``PROMPT_VERSION`` changes whenever any template text changes, so attention caches keyed
on it never serve maps computed with other wording.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import InputError
from .registry import Registry

#: bump when any template below changes (goes into cache keys together with the version name)
PROMPT_VERSION = "prompts-2"


@dataclass(frozen=True)
class PromptSet:
    """Templates of one wording version.

    ``object``: placeholder ``{expression}``; ``choice``: ``{expression}`` and
    ``{candidates}`` (comma-separated words); ``background``: ``{obj_name}``.
    """

    name: str
    object: str
    choice: str
    background: str
    description: str = ""

    def object_prompt(self, expression: str) -> str:
        return self.object.format(expression=normalize_expression(expression))

    def choice_prompt(self, expression: str, candidates: list[str]) -> str:
        cands = ", ".join(dict.fromkeys(c.strip() for c in candidates if c and c.strip()))
        return self.choice.format(expression=normalize_expression(expression), candidates=cands)

    def background_prompt(self, obj_name: str) -> str:
        return self.background.format(obj_name=obj_name.strip())

    def to_dict(self) -> dict:
        return asdict(self)


_V0 = PromptSet(
    name="v0",
    object=(
        "{expression} Which main object does this expression refer to? Focus on the primary "
        "subject or agent. Answer in one word (e.g. 'cat', 'person', 'dog')."
    ),
    choice=(
        "Expression: {expression} Candidate objects: {candidates}. Which single class label is "
        "the most likely object that the expression refers to? Answer in one word."
    ),
    background=(
        "Describe the background scene of the video, excluding any {obj_name}, in a single "
        "word or phrase."
    ),
    description="published default wording (method page, section 2)",
)
_V1 = PromptSet(
    name="v1",
    object=(
        "{expression} What is the main subject this sentence is about? Reply with a single "
        "noun such as 'cat', 'person' or 'dog'."
    ),
    choice=(
        "Sentence: {expression} Possible answers: {candidates}. Pick the one class name that "
        "best matches what the sentence refers to. Reply with one word."
    ),
    background="What is the background of the video, apart from the {obj_name}? Reply with one word or a short phrase.",
    description="harness rewording: shorter, 'subject' phrasing",
)
_V2 = PromptSet(
    name="v2",
    object=(
        "Read the expression: {expression} Identify the object it describes, the agent of "
        "the action if there is one. Give only its name in one word."
    ),
    choice=(
        "Given the expression {expression} and the candidate names {candidates}, choose the most "
        "likely category of the referred object. Give only one word."
    ),
    background="Name the setting or environment shown in the video, not the {obj_name}, in one word or phrase.",
    description="harness rewording: 'identify' / 'setting' phrasing",
)
_V3 = PromptSet(
    name="v3",
    object="{expression} Answer with one word: which object is referred to?",
    choice="{expression} Candidates: {candidates}. Answer with one word: which class label fits best?",
    background="Answer with one word or phrase: what is the background of the video, excluding the {obj_name}?",
    description="harness rewording: minimal, answer-format first",
)

PROMPTS: Registry[PromptSet] = Registry(kind="prompt set", check=lambda obj: isinstance(obj, PromptSet))
PROMPTS.update((p.name, p, p.description) for p in (_V0, _V1, _V2, _V3))

DEFAULT_PROMPTS = "v0"


def get_prompts(version: str = DEFAULT_PROMPTS) -> PromptSet:
    """The prompt set of ``version`` ("v0".."v3"); unknown names raise with a hint."""
    return PROMPTS.get(version)


def prompt_key(version: str = DEFAULT_PROMPTS) -> str:
    """What a cache key records about wording: template revision and version name."""
    get_prompts(version)
    return f"{PROMPT_VERSION}:{version}"


def normalize_expression(text: str) -> str:
    """Strip surrounding whitespace and append "." unless the expression already ends with "." or "?" (method 1)."""
    if not isinstance(text, str):
        raise InputError(f"expression must be a string, got {type(text).__name__}")
    text = text.strip()
    return text if text.endswith((".", "?")) else text + "."


def clean_answer(text: str, max_words: int = 3) -> str:
    """A generated short answer as a label: its first line, words stripped of punctuation and
    quotes, lower case, at most ``max_words`` words ("A cat." -> "a cat", "'Dog'" -> "dog")."""
    lines = (text or "").strip().splitlines()
    words = [w.strip(" \t.,;:!?'\"`()[]{}") for w in (lines[0].split() if lines else [])]
    return " ".join([w for w in words if w][:max_words]).lower()
