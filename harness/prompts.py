"""DecAF's prompts: the official wording as data, and the four-prompt dialogue.

The method is defined by the official implementation's prompt strings (HYUNJS/DecAF,
``evaluation/inf_utils.py``): ``PROMPT_TMPL_OBJ_CLS``, ``PROMPT_TMPL_OBJ_CHOICE`` and
``PROMPT_TMPL_BACKGROUND`` (``v0``, the default) and their ``_abl_v1``..``_abl_v3``
ablations (``v1``..``v3``). They are reproduced here byte for byte (curly quotes, arrows,
trailing spaces and newlines included); ``tests/fixtures/golden/prompts.json`` holds the
strings as read from the official file and the tests compare against it.

Placeholders are the official ones: ``{sent}`` (object prompt; background of v3),
``{ref_query}`` and ``{obj_cls_list}`` (choice prompt; v3 has no candidate list) and
``{obj_name}`` (background prompt).

Text handling follows ``evaluation/inference_attn_map_qwenvl.py`` and
``evaluation/llm_prompting_utils.py``: the expression gets a "." unless it already ends with
"?" or "." (:func:`normalize_expression`, no other change); the object, choice and v3
background prompts use it lower-cased; the candidates are the object prompt's raw answers
(stripped), video view first then every frame, lower-cased and joined with "," (duplicates
kept: the choice prompt asks the model to weigh frequency); the object word is the choice
answer stripped and lower-cased. :func:`run_dialogue` runs that sequence on an adapter;
``decaf run`` and ``decaf inspect`` both use it, so inspect shows what run feeds the model.

``PROMPT_VERSION`` changes whenever any template text or this handling changes, so attention
caches keyed on it never serve maps computed with other wording.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .errors import InputError
from .registry import Registry

#: bump when any template below or the expression/answer handling changes (part of cache keys)
PROMPT_VERSION = "prompts-3-official"

#: the official default of ``max_new_tokens`` in every generate call (llm_prompting_utils.py)
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class PromptSet:
    """The three templates of one official wording version, with the official placeholders."""

    name: str
    object: str
    choice: str
    background: str
    description: str = ""
    #: the official constant names the templates reproduce
    source: tuple[str, str, str] = ()

    def object_prompt(self, expression: str) -> str:
        """Object prompt for an already normalized expression (lower-cased here, as official)."""
        return self.object.format(sent=expression.lower())

    def choice_prompt(self, expression: str, candidates: Sequence[str]) -> str:
        """Choice prompt: the expression lower-cased and :func:`candidate_list` of the answers."""
        return self.choice.format(ref_query=expression.lower(), obj_cls_list=candidate_list(candidates))

    def background_prompt(self, obj_name: str, expression: str) -> str:
        """Background prompt; ``v3`` uses the (lower-cased) expression instead of the object word."""
        return self.background.format(obj_name=obj_name, sent=expression.lower())

    def to_dict(self) -> dict:
        return asdict(self)


_V0 = PromptSet(
    name="v0",
    object=(
        "{sent} \n"
        "What is the main object (or objects) referred to in the given expression or question? \n"
        "Focus on the **primary subject or agent** involved in the described action or behavior. "
        "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). "
    ),
    choice=(
        "Given:\n"
        "- Expression: '{ref_query}'\n"
        "- Candidate object class list: {obj_cls_list}\n"
        "Goal: Identify the object class referred to by the expression. Instructions:\n"
        "1. If the expression is **clear**, rely on it directly (e.g., 'a person driving a car' \u2192 'person').\n"
        "2. If the expression is **vague**, use the object class list to support your decision (e.g., check frequency and plausibility).\n"
        "3. Avoid defaulting to the most frequent class unless the expression lacks clarity.\n"
        "Output the most likely referred object class - just the label.\n"
    ),
    background=(
        "Describe the background scene of the video, excluding any {obj_name}. Answer the question using a single word or phrase."
    ),
    description="official default wording (PROMPT_TMPL_OBJ_CLS / _OBJ_CHOICE / _BACKGROUND)",
    source=("PROMPT_TMPL_OBJ_CLS", "PROMPT_TMPL_OBJ_CHOICE", "PROMPT_TMPL_BACKGROUND"),
)
_V1 = PromptSet(
    name="v1",
    object=(
        "{sent} \n"
        "Identify the primary object referred to in the expression and answer with a single word. \n"
    ),
    choice=(
        "Given the expression \u2018{ref_query}\u2019 and the candidate object classes {obj_cls_list}, select the single class label that best matches the object referred to in the expression.\n"
    ),
    background="Describe the background scene of the video. Answer the question using a single word or phrase.",
    description="official ablation v1 (the *_abl_v1 templates; background without the object word)",
    source=("PROMPT_TMPL_OBJ_CLS_abl_v1", "PROMPT_TMPL_OBJ_CHOICE_abl_v1", "PROMPT_TMPL_BACKGROUND_abl_v1"),
)
_V2 = PromptSet(
    name="v2",
    object=(
        "{sent} \n"
        "Identify the primary object referred to in the expression. \n"
        "Focus on the **primary subject or agent** involved in the described action or behavior. "
        "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). "
    ),
    choice=(
        "Using the expression \u2018{ref_query}\u2019 and the candidate object classes {obj_cls_list}, determine which object class the expression refers to.\n"
        "If the reference is explicit, rely on the expression; if ambiguous, use the class list as support.\n"
        "Output only the most likely object class.\n"
    ),
    background="Describe the background of the video while excluding any {obj_name}, using a single word or short phrase.",
    description="official ablation v2 (the *_abl_v2 templates)",
    source=("PROMPT_TMPL_OBJ_CLS_abl_v2", "PROMPT_TMPL_OBJ_CHOICE_abl_v2", "PROMPT_TMPL_BACKGROUND_abl_v2"),
)
_V3 = PromptSet(
    name="v3",
    object=(
        "{sent} \n"
        "Determine the primary subject or agent mentioned in the expression or question, and provide the object's label within a single word or phrase. "
    ),
    choice=(
        "Given:\n"
        "- Expression: '{ref_query}'\n"
        "Goal: Identify the object class referred to by the expression. (e.g., 'a person driving a car' \u2192 'person').\n"
        "Output the most likely referred object class - just the label.\n"
    ),
    background=(
        "Describe the background scene of the video, excluding the objects referred to in the given expression or question '{sent}'. Answer the question using a single word or phrase."
    ),
    description="official ablation v3 (the *_abl_v3 templates; background uses the expression, choice has no candidate list)",
    source=("PROMPT_TMPL_OBJ_CLS_abl_v3", "PROMPT_TMPL_OBJ_CHOICE_abl_v3", "PROMPT_TMPL_BACKGROUND_abl_v3"),
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
    """Append "." unless the expression ends with "?" or "." (official; nothing else changes).

    As in the official script the text is not stripped: a trailing space gives "... ." there too.
    """
    if not isinstance(text, str):
        raise InputError(f"expression must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("expression is empty")
    return text if text.endswith(("?", ".")) else text + "."


def candidate_list(answers: Sequence[str]) -> str:
    """The choice prompt's candidate list: answers lower-cased, joined by "," (duplicates and
    empty answers kept, in the given order)."""
    return ",".join(a.lower() for a in answers)


def object_word(choice_answer: str) -> str:
    """The object word the background prompt uses: the choice answer stripped and lower-cased."""
    return choice_answer.strip().lower()


@dataclass
class Dialogue:
    """The four prompts of one expression as run, with what each returned.

    ``prompts``: user-message texts exactly as given to the chat template (object, choice,
    background). ``results``: :class:`~decafbench.adapters.base.ViewResult` of
    ``object_video``, ``object_frame``, ``background_video``, ``background_frame``.
    ``candidates``: raw stripped answers of the object prompt, video view first.
    """

    expression: str
    prompts: dict[str, str]
    candidates: list[str]
    choice_answer: str
    object_word: str
    results: dict[str, Any] = field(default_factory=dict)


def run_dialogue(adapter: Any, video: Any, frame: Any, expression: str, prompts: PromptSet,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Dialogue:
    """Official order on opened ``video`` / ``frame`` sessions: object prompt (video, then frame
    view), choice prompt (text only), background prompt (video, then frame view)."""
    text = normalize_expression(expression)
    obj_prompt = prompts.object_prompt(text)
    obj_v = adapter.attend(video, obj_prompt, max_new_tokens=max_new_tokens)
    obj_f = adapter.attend(frame, obj_prompt, max_new_tokens=max_new_tokens)
    candidates = [t.strip() for t in [*obj_v.texts, *obj_f.texts]]
    choice = prompts.choice_prompt(text, candidates)
    answer = adapter.answer(choice, max_new_tokens=max_new_tokens)
    word = object_word(answer)
    bg_prompt = prompts.background_prompt(word, text)
    bg_v = adapter.attend(video, bg_prompt, max_new_tokens=max_new_tokens)
    bg_f = adapter.attend(frame, bg_prompt, max_new_tokens=max_new_tokens)
    return Dialogue(
        expression=text,
        prompts={"object": obj_prompt, "choice": choice, "background": bg_prompt},
        candidates=candidates,
        choice_answer=answer,
        object_word=word,
        results={"object_video": obj_v, "object_frame": obj_f, "background_video": bg_v, "background_frame": bg_f},
    )
