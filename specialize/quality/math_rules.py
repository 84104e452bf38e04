"""Rule-based filters for math text, after OpenWebMath's pipeline (math-content score + prose rules).

OpenWebMath keeps a page when it has math (LaTeX, math symbols) and reads like prose, not a menu or a
cookie banner. Our rules, in order (first one that fires names the reason):

- ``too_short`` / ``too_long``: fewer than ``min_words`` words / more than ``max_bytes`` bytes
- ``low_math_score``: math density below ``min_math_score``. The score counts math signals per word:
  LaTeX commands (``\\frac``, ``\\sum``) and ``$``/``\\(``/``\\[`` delimiters weigh 2, operator and
  relation symbols (``= + - * / ^ < > ≤ ∑ √ π``...) 1, numbers 0.5
- ``low_alpha_words``: fewer than ``min_alpha_word_fraction`` of the words contain a letter (tables of
  numbers, symbol dumps)
- ``repetitive_lines``: more than ``max_duplicate_line_fraction`` of the non-empty lines repeat
- ``bad_mean_word_length``: mean length of the words with a letter outside [``min_mean_word_length``, ``max_mean_word_length``]
- ``boilerplate``: ``max_boilerplate_phrases`` or more web boilerplate phrases (cookies, lorem ipsum...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from specialize.quality.settings import from_section

_LATEX = re.compile(r"\\[A-Za-z]+|\$\$?|\\[\(\)\[\]]")
_SYMBOL = re.compile(r"[=+\-*/^<>±×÷≤≥≠≈∑∏∫√π∞∂∇∈∉⊂⊆∪∩→⇒⇔∀∃]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_BOILERPLATE = re.compile(
    r"lorem ipsum|we use cookies|cookie (?:policy|settings|consent)|accept (?:all )?cookies|privacy policy"
    r"|terms of (?:use|service)|all rights reserved|javascript (?:is )?disabled"
    r"|click here|sign in|log in|subscribe|share this|skip to (?:main )?content",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MathFilterSettings:
    min_words: int
    max_bytes: int
    min_math_score: float
    min_alpha_word_fraction: float
    min_mean_word_length: float
    max_mean_word_length: float
    max_duplicate_line_fraction: float
    max_boilerplate_phrases: int

    @classmethod
    def from_profile(cls, section: dict, where: str = "profile filters.math") -> "MathFilterSettings":
        return from_section(cls, section, where)


def math_score(text: str, words: int | None = None) -> float:
    """Math signals per word (see module docstring); 0 for an empty text."""
    words = len(text.split()) if words is None else words
    if not words:
        return 0.0
    signals = 2 * len(_LATEX.findall(text)) + len(_SYMBOL.findall(text)) + 0.5 * len(_NUMBER.findall(text))
    return signals / words


def math_verdict(text: str, settings: MathFilterSettings) -> tuple[str, str] | None:
    """``(reason, detail)`` when the text should be dropped, else None."""
    words = text.split()
    size = len(text.encode("utf-8"))
    if len(words) < settings.min_words:
        return "too_short", f"{len(words)} words < {settings.min_words}"
    if size > settings.max_bytes:
        return "too_long", f"{size} bytes > {settings.max_bytes}"
    score = math_score(text, len(words))
    if score < settings.min_math_score:
        return "low_math_score", f"math score {score:.3f} < {settings.min_math_score:g}"
    alpha = sum(1 for w in words if any(c.isalpha() for c in w)) / len(words)
    if alpha < settings.min_alpha_word_fraction:
        return "low_alpha_words", f"{alpha:.2f} of words have a letter < {settings.min_alpha_word_fraction:g}"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if lines:
        duplicated = 1 - len(set(lines)) / len(lines)
        if duplicated > settings.max_duplicate_line_fraction:
            return "repetitive_lines", f"{duplicated:.2f} of lines repeat > {settings.max_duplicate_line_fraction:g}"
    lettered = [w for w in words if any(c.isalpha() for c in w)]  # "=", "2" and "x+1" say nothing about prose
    mean = sum(len(w) for w in lettered) / max(1, len(lettered))
    if not settings.min_mean_word_length <= mean <= settings.max_mean_word_length:
        return "bad_mean_word_length", (f"mean word length {mean:.1f} outside "
                                        f"[{settings.min_mean_word_length:g}, {settings.max_mean_word_length:g}]")
    phrases = len(_BOILERPLATE.findall(text))
    if phrases >= settings.max_boilerplate_phrases:
        return "boilerplate", f"{phrases} boilerplate phrases (cookies, sign in, ...)"
    return None
