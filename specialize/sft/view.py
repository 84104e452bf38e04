"""What ``specialize sft inspect`` shows: rendered conversations with trained and masked tokens in
different colours, data statistics, and a JSONL dump of ids and labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from specialize.sft.chatml import KIND_END, KIND_START, EncodedConversation
from specialize.sft.conversations import ReadReport
from specialize.sft.packing import PackedConversations
from specialize.tokenization import QwenTokenizer

IGNORE_INDEX = -100  # Hugging Face / Qwen finetune.py convention for masked labels
TRAINED_STYLE = "bold green"
MASKED_STYLE = "grey50"


def styled(tokenizer: QwenTokenizer, conversation: EncodedConversation, brackets: bool = False) -> Text:
    """The conversation's text, runs of trained tokens in green, masked ones in grey; the template's
    special tokens are underlined (so ``<|im_end|>`` typed inside a message, which is plain text, shows
    without underline). With ``brackets`` (no colour: a pipe, a file, NO_COLOR) trained runs are also
    wrapped in ⟦ ⟧.

    Runs are decoded together so multi-byte characters split over tokens stay readable.
    """
    text = Text()
    flags = conversation.targets
    special = np.isin(conversation.kinds, (KIND_START, KIND_END))
    start = 0
    for end in range(1, len(flags) + 1):
        if end == len(flags) or flags[end] != flags[start] or special[end] or special[end - 1]:
            trained = bool(flags[start])
            if brackets and trained and (start == 0 or not flags[start - 1]):
                text.append("⟦")
            piece = tokenizer.decode_bytes(conversation.ids[start:end]).decode("utf-8", errors="replace")
            style = TRAINED_STYLE if trained else MASKED_STYLE
            text.append(piece, style=style + (" underline" if special[start] else ""))
            if brackets and trained and (end == len(flags) or not flags[end]):
                text.append("⟧")
            start = end
    return text


def hf_labels(conversation: EncodedConversation) -> list[int]:
    """Labels the way Hugging Face trainers take them: the token id where trained, -100 where masked,
    aligned with ``input_ids`` (the model shifts them)."""
    return np.where(conversation.targets, conversation.ids, IGNORE_INDEX).tolist()


def write_jsonl(handle: TextIO, conversations: Sequence[EncodedConversation]) -> int:
    for conversation in conversations:
        handle.write(json.dumps({"source": conversation.source, "input_ids": conversation.ids.tolist(),
                                 "labels": hf_labels(conversation)}) + "\n")
    return len(conversations)


def write_packed_jsonl(handle: TextIO, dataset: PackedConversations) -> int:
    """The samples exactly as the training runtime receives them (``data_api`` fields)."""
    for index in range(len(dataset)):
        sample = dataset[index]
        handle.write(json.dumps({name: array.tolist() for name, array in sample.items()}) + "\n")
    return len(dataset)


def print_conversations(console: Console, tokenizer: QwenTokenizer, conversations: Sequence[EncodedConversation]) -> None:
    legend = Text("legend: ")
    brackets = console.color_system is None
    legend.append("⟦trained⟧" if brackets else "trained", style=TRAINED_STYLE)
    legend.append(" (the model learns to produce these tokens)")
    legend.append("  ")
    legend.append("masked", style=MASKED_STYLE)
    legend.append(" (context only, ignore index)")
    console.print(legend)
    for conversation in conversations:
        console.rule(f"{conversation.source}  {len(conversation)} tokens, {conversation.num_targets} trained")
        console.print(styled(tokenizer, conversation, brackets), end="\n", soft_wrap=True, highlight=False, markup=False)


def print_stats(console: Console, read: ReadReport, conversations: Sequence[EncodedConversation], seq_length: int) -> None:
    lengths = np.array([len(c) for c in conversations]) if conversations else np.zeros(1, dtype=int)
    trained = sum(int(c.targets[1:].sum()) for c in conversations)
    table = Table(title="SFT data")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{read.rows:,}")
    table.add_row("conversations kept", f"{read.kept:,}")
    for reason, count in sorted(read.skipped.items()):
        table.add_row(f"skipped: {reason}", f"{count:,}")
    table.add_row("tokens", f"{int(lengths.sum()):,}")
    table.add_row("trained tokens", f"{trained:,} ({trained / max(int(lengths.sum()), 1):.1%})")
    table.add_row("tokens per conversation: median / p95 / max",
                  f"{int(np.median(lengths))} / {int(np.percentile(lengths, 95))} / {int(lengths.max())}")
    table.add_row(f"longer than seq_length {seq_length}", f"{int((lengths > seq_length).sum()):,}")
    console.print(table)
    for reason, examples in sorted(read.examples.items()):
        for example in examples:
            console.print(f"[yellow]skipped[/] {reason}: {example}", highlight=False)


def write_output(path: Path, conversations: Sequence[EncodedConversation], packed: PackedConversations | None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        return write_packed_jsonl(handle, packed) if packed is not None else write_jsonl(handle, conversations)
