"""The task, on one screen: the answer format, the prompt, the training target, where generation
stops and the one judge of a completion.

One real problem (the first of GSM8K's train split)::

    question: "Natalia sold clips to 48 of her friends in April, and then she sold half as many
               clips in May. How many clips did Natalia sell altogether in April and May?"
    answer:   "Natalia sold 48/2 = <<48/2=24>>24 clips in May.
               Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
               #### 72"

Its prompt (:func:`build_prompt`, SmolLM2's chat template) ends in the opening reasoning tag, so
the model starts reasoning at once::

    <|im_start|>system
    You are given a math problem. Think about the problem and show your working between
    <start_working_out> and <end_working_out>. Then give the final numerical answer between
    <SOLUTION> and </SOLUTION>.<|im_end|>
    <|im_start|>user
    Natalia sold clips to 48 of her friends in April, ...<|im_end|>
    <|im_start|>assistant
    <start_working_out>

Its SFT target (:func:`format_target`; GSM8K's calculator calls ``<<48/2=24>>`` dropped)::

    Natalia sold 48/2 = 24 clips in May.
    Natalia sold 48+24 = 72 clips altogether in April and May.<end_working_out><SOLUTION>72</SOLUTION>

Generation stops at :data:`STOP` (the closing solution tag). The judge (:func:`judge`, through
:func:`is_correct` for raw completions) reads the last closed ``<SOLUTION>`` block, or an unclosed
final one, and compares its last number with the gold (the number rules are in
:mod:`gsm8k_lab.answers`). Evaluation, GRPO's ``answer_correct`` reward and the traces' acceptance
all call this one judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .answers import PATTERNS as NUMBER_PATTERNS
from .answers import numbers_match, parse_number

REASONING_START = "<start_working_out>"
REASONING_END = "<end_working_out>"
SOLUTION_START = "<SOLUTION>"
SOLUTION_END = "</SOLUTION>"

SYSTEM_PROMPT = (
    "You are given a math problem. Think about the problem and show your working "
    f"between {REASONING_START} and {REASONING_END}. "
    f"Then give the final numerical answer between {SOLUTION_START} and {SOLUTION_END}."
)

#: Generation ends once the answer block is closed.
STOP = (SOLUTION_END,)

_S, _E = re.escape(SOLUTION_START), re.escape(SOLUTION_END)
#: The blocks of the answer format (data, so they are visible and table-tested).
PATTERNS: dict[str, re.Pattern] = {
    # a closed solution block, non-greedy so several blocks are found separately
    "solution_block": re.compile(rf"{_S}(.*?){_E}", re.DOTALL),
    # an opening tag with no closing tag after it
    "solution_open": re.compile(rf"{_S}(?!.*{_E})(.*)\Z", re.DOTALL),
    # reasoning block with something inside it
    "reasoning_block": re.compile(rf"{re.escape(REASONING_START)}(.*?){re.escape(REASONING_END)}", re.DOTALL),
}

# GSM8K writes calculator calls as <<48/2=24>> before the result ("48/2 = <<48/2=24>>24").
# They are tool-use artefacts, not reasoning: targets drop them and keep the prose.
_CALCULATOR = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class Parsed:
    """What a completion says, as the metrics and rewards need it."""

    solution: str | None  # raw text inside the chosen SOLUTION block
    value: float | None  # its number, when one could be read
    closed: bool  # the chosen block had its closing tag
    n_solution_blocks: int  # closed blocks in the text
    has_thinking: bool  # a non-empty reasoning block before the answer

    @property
    def has_answer(self) -> bool:
        return self.value is not None


# --------------------------------------------------------------------------
# Prompt and target
# --------------------------------------------------------------------------
def build_messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def build_prompt(tokenizer, question: str) -> str:
    """The generation prompt: chat template, then the opening reasoning tag.

    Evaluation, SFT and GRPO all use this one string, so training and testing
    see the same context. Tokenizers without a chat template get a plain layout.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            build_messages(question), tokenize=False, add_generation_prompt=True
        )
    else:
        text = f"{SYSTEM_PROMPT}\n\nQuestion: {question}\nAnswer: "
    return text + REASONING_START


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids as generation sees them: the text alone, no special tokens added
    (the chat template already wrote any BOS)."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def trl_prompt(tokenizer, prompt: str) -> str:
    """The prompt text for TRL's GRPO, which tokenizes with the tokenizer's special tokens added.

    A Llama-3-style tokenizer prepends BOS, and its chat template already starts
    with BOS: without this the rollouts would see it twice, a context that
    evaluation never sees. Here the template's BOS is dropped from the text so
    the ids TRL builds equal :func:`prompt_ids`.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos):
        if tokenizer(prompt)["input_ids"] != prompt_ids(tokenizer, prompt):
            return prompt[len(bos):]
    return prompt


def format_target(answer: str) -> str:
    """A GSM8K solution (or a trace) rewritten as the completion the model should write.

    ``"a = <<1+1=2>>2\\n#### 2"`` becomes
    ``"a = 2<end_working_out><SOLUTION>2</SOLUTION>"`` (the prompt already opened
    ``<start_working_out>``).
    """
    m = NUMBER_PATTERNS["gold_marker"].search(answer)
    if not m:
        raise ValueError("answer lacks the '#### N' marker")
    reasoning = _CALCULATOR.sub("", answer[: m.start()]).strip()
    final = m.group(1).replace(",", "").strip()
    return f"{reasoning}{REASONING_END}{SOLUTION_START}{final}{SOLUTION_END}"


def reasoning_to_trace(reasoning: str, final: str) -> str:
    """The traces-file answer layout: ``"<reasoning>\\n\\n#### N"``."""
    return f"{reasoning.strip()}\n\n#### {final}"


# --------------------------------------------------------------------------
# Reading a completion, and the judge
# --------------------------------------------------------------------------
def assistant_text(completion: str) -> str:
    """The assistant's whole turn: the prompt's opening reasoning tag plus the completion."""
    if completion.lstrip().startswith(REASONING_START):
        return completion
    return REASONING_START + completion


def parse_completion(text: str) -> Parsed:
    """Parse the assistant text (see :func:`assistant_text`).

    The answer is the content of the **last closed** ``<SOLUTION>…</SOLUTION>`` block (a model that
    hedges is judged on its final word). With no closed block, an unclosed final ``<SOLUTION>`` is
    read up to the end of the text (a completion can stop at EOS right after the number);
    :attr:`Parsed.closed` records which case applied.
    """
    blocks = PATTERNS["solution_block"].findall(text)
    if blocks:
        solution, closed = blocks[-1], True
    else:
        m = PATTERNS["solution_open"].search(text)
        solution, closed = (m.group(1), False) if m else (None, False)
    value = parse_number(solution) if solution is not None else None
    reasoning = PATTERNS["reasoning_block"].search(text)
    has_thinking = bool(reasoning and reasoning.group(1).strip())
    return Parsed(solution, value, closed, len(blocks), has_thinking)


def judge(value: float | None, gold: float) -> bool:
    """The one verdict: the answer read from a completion (``Parsed.value``, or a majority vote of
    several) equals the gold, exactly for an integer gold (see :func:`gsm8k_lab.answers.numbers_match`).

    >>> judge(parse_completion("<start_working_out>...<end_working_out><SOLUTION>$72.00</SOLUTION>").value, 72)
    True
    """
    return numbers_match(value, gold)


def is_correct(completion: str, gold: float) -> bool:
    """Score a completion (without the opening tag) against the gold number.

    >>> is_correct("48/2 = 24, 48+24 = 72<end_working_out><SOLUTION>72</SOLUTION>", 72.0)
    True
    """
    return judge(parse_completion(assistant_text(completion)).value, gold)
