"""Qwen's special tokens: the one place their names and ids are defined.

Qwen 1.0 appends these after the BPE ranks, starting at 151643 for the real vocabulary. The
embedded tiny vocabulary keeps the same order and names, starting right after its own ranks,
so every other module asks for ids by name and never hard-codes a number.
"""

from __future__ import annotations

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
NUM_EXTRA_TOKENS = 205
EXTRAS = tuple(f"<|extra_{i}|>" for i in range(NUM_EXTRA_TOKENS))

#: Order of Qwen 1.0's special tokens after the mergeable ranks.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, *EXTRAS)

#: First special id of the real Qwen vocabulary (151,643 ranks).
QWEN_SPECIAL_START_ID = 151643

#: Qwen's pre-tokenisation pattern (Qwen 1.0 and Qwen2 alike): digits are split one by one
#: (`\p{N}` without a `+`), unlike GPT-4's cl100k which groups up to three digits.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def qwen_special_ids(first_id: int) -> dict[str, int]:
    """Special-token ids laid out the way Qwen 1.0 does, starting at ``first_id``."""
    return {token: first_id + offset for offset, token in enumerate(QWEN_SPECIAL_TOKENS)}
