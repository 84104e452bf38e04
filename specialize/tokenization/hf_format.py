"""Conversion between tiktoken ranks and Hugging Face byte-level BPE files.

Qwen1.5/2/2.5 ship ``vocab.json`` + ``merges.txt`` (and ``tokenizer.json``) in GPT-2's byte-to-unicode
alphabet; Qwen 1.0 ships ``qwen.tiktoken``. Both describe the same kind of BPE: tiktoken merges the
adjacent pair whose concatenation has the lowest rank, Hugging Face the pair with the earliest merge.
They agree exactly when token ids grow in merge order, which we check instead of assuming.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = printable[:]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in byte_values:
            byte_values.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(byte_values, chars)}


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_unicode(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def unicode_to_token(text: str, *, source: str = "vocabulary") -> bytes:
    table = unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in text)
    except KeyError as err:
        raise ValueError(f"{source}: token {text!r} has a character outside the byte-level alphabet") from err


def ranks_from_vocab_and_merges(
    vocab: dict[str, int], merges: list[tuple[str, str]], *, source: str
) -> dict[bytes, int]:
    """Turn a byte-level BPE vocabulary into tiktoken mergeable ranks (rank == token id).

    Raises ``ValueError`` naming ``source`` when the ids cannot serve as ranks, i.e. when tiktoken
    would tokenize differently from Hugging Face.
    """
    ranks: dict[bytes, int] = {}
    for text, token_id in vocab.items():
        ranks[unicode_to_token(text, source=source)] = int(token_id)
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"{source}: byte-level vocabulary lacks single-byte tokens for bytes {missing[:8]}")
    previous = -1
    for index, (left, right) in enumerate(merges):
        merged = unicode_to_token(left + right, source=source)
        token_id = ranks.get(merged)
        if token_id is None:
            raise ValueError(f"{source}: merge #{index} {left!r} {right!r} produces a token missing from the vocabulary")
        if token_id <= previous:
            raise ValueError(
                f"{source}: merge #{index} {left!r} {right!r} has id {token_id} after id {previous}; ids do not "
                "follow merge order, so tiktoken ranks would not reproduce this tokenizer"
            )
        previous = token_id
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Recover the merge list from ranks: each token splits into the two parts BPE builds it from."""
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in ordered:
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_index, best_rank = -1, None
            for i in range(len(parts) - 1):
                candidate = ranks.get(parts[i] + parts[i + 1])
                if candidate is not None and candidate < rank and (best_rank is None or candidate < best_rank):
                    best_index, best_rank = i, candidate
            if best_index < 0:
                break
            parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) cannot be built from two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def read_hf_tokenizer_files(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int], bool]:
    """Read vocab, merges, added (special) tokens and whether NFC normalisation applies.

    Prefers ``tokenizer.json``; falls back to ``vocab.json`` + ``merges.txt`` (+ ``tokenizer_config.json``).
    """
    tokenizer_json = directory / "tokenizer.json"
    added: dict[str, int] = {}
    nfc = False
    if tokenizer_json.is_file():
        try:
            data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{tokenizer_json}: not a readable tokenizer.json ({err})") from err
        model = data.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"{tokenizer_json}: model type {model.get('type')!r} is not byte-level BPE")
        vocab = model["vocab"]
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
        normalizer = json.dumps(data.get("normalizer"))
        nfc = '"NFC"' in normalizer
        return vocab, merges, added, nfc  # type: ignore[return-value]
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    if not (vocab_file.is_file() and merges_file.is_file()):
        raise FileNotFoundError(f"{directory}: no tokenizer.json, nor vocab.json + merges.txt")
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    merges = []
    for line in merges_file.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        left, _, right = line.partition(" ")
        merges.append((left, right))
    config_file = directory / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        for token_id, entry in (config.get("added_tokens_decoder") or {}).items():
            added[entry["content"]] = int(token_id)
        # Qwen2's slow tokenizer NFC-normalises too; the config does not say so, the class does.
        nfc = config.get("tokenizer_class", "").startswith("Qwen2")
    return vocab, merges, added, nfc  # type: ignore[return-value]
