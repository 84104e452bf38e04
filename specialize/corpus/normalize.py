"""Text normalisation every document gets before any filter sees it.

Only what makes byte-identical content compare equal: strict UTF-8 (no silent replacement
characters: a file that is not UTF-8 is dropped and counted), no BOM, and ``\\n`` newlines.
Unicode normalisation (NFC) is the tokenizer's business (Qwen2's tokenizer applies it, Qwen 1.0's not).
"""

from __future__ import annotations


class NormalizationError(ValueError):
    pass


def decode_and_normalize(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NormalizationError(f"not UTF-8: invalid byte 0x{data[err.start]:02x} at offset {err.start}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
