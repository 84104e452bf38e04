"""Packing encoded conversations into fixed-length training samples (the ``data_api`` sample contract).

Several conversations share one sample of ``seq_length`` positions; each keeps its own rotary
positions (restarting at 0) and its own ``segment_ids`` value, from which the runtime builds a
block-diagonal causal mask, so no token attends to or is positioned after another conversation.
Within a conversation of ``n`` tokens, position ``t`` predicts token ``t+1`` and counts in the loss
iff that token is a target; the last position predicts nothing (label EOD, loss 0), so a conversation
takes exactly ``n`` positions and a sample never trains a prediction across a boundary.

A conversation longer than ``seq_length`` is dropped (counted) by default, or truncated to its first
``seq_length`` tokens with ``overlength="truncate"`` (dropped anyway when no target survives).

Packing is first-fit over a window of the most recent open samples, in a shuffled order that is a
pure function of (seed, epoch): sample ``i`` of the dataset is always the same, in every process and
after a restart, which is what the runtime's exact resume relies on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from specialize.sft.chatml import EncodedConversation

OVERLENGTH_POLICIES = ("drop", "truncate")
OPEN_BINS = 64  # samples kept open for first-fit; bounds packing time at O(conversations x 64)


@dataclass
class FitReport:
    """What the length policy did."""

    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, source: str, detail: str) -> None:
        self.dropped[reason] += 1
        named = self.examples.setdefault(reason, [])
        if len(named) < 5:
            named.append(f"{source}: {detail}")

    def as_dict(self) -> dict:
        return {"kept": self.kept, "truncated": self.truncated, "dropped": dict(self.dropped), "examples": self.examples}


def fit_to_length(conversations: Sequence[EncodedConversation], seq_length: int,
                  overlength: str = "drop") -> tuple[list[EncodedConversation], FitReport]:
    """Apply the over-length policy; returns the conversations that fit and the report."""
    if overlength not in OVERLENGTH_POLICIES:
        raise ValueError(f"overlength={overlength!r}: expected one of {', '.join(OVERLENGTH_POLICIES)}")
    report = FitReport()
    kept = []
    for conversation in conversations:
        if len(conversation) > seq_length:
            if overlength == "drop":
                report.drop("over_length", conversation.source, f"{len(conversation)} tokens > seq_length {seq_length}")
                continue
            conversation = conversation.truncated(seq_length)
            if conversation.num_targets == 0:
                report.drop("no_target_after_truncation", conversation.source,
                            f"no trained token in the first {seq_length} tokens")
                continue
            report.truncated += 1
        kept.append(conversation)
    report.kept = len(kept)
    return kept, report


def first_fit(lengths: Sequence[int], order: Sequence[int], seq_length: int, open_bins: int = OPEN_BINS) -> list[list[int]]:
    """Group ``order`` (indices into ``lengths``) into bins of total length <= ``seq_length``.

    Each item goes to the oldest of the last ``open_bins`` bins it fits in, else a new bin; bins come
    out in order of creation. Deterministic.
    """
    bins: list[list[int]] = []
    free: list[int] = []
    first_open = 0
    for index in order:
        size = lengths[index]
        if size > seq_length:
            raise ValueError(f"item {index} has length {size} > seq_length {seq_length}; apply fit_to_length first")
        for b in range(max(first_open, len(bins) - open_bins), len(bins)):
            if free[b] >= size:
                bins[b].append(index)
                free[b] -= size
                break
        else:
            bins.append([index])
            free.append(seq_length - size)
        while first_open < len(bins) and free[first_open] == 0:
            first_open += 1
    return bins


def build_sample(conversations: Sequence[EncodedConversation], seq_length: int, eod_id: int) -> dict[str, np.ndarray]:
    """One sample (data_api fields) holding ``conversations`` back to back, then EOD padding."""
    tokens = np.full(seq_length, eod_id, dtype=np.int64)
    labels = np.full(seq_length, eod_id, dtype=np.int64)
    loss_mask = np.zeros(seq_length, dtype=np.float32)
    position_ids = np.zeros(seq_length, dtype=np.int64)
    segment_ids = np.zeros(seq_length, dtype=np.int32)
    start = 0
    for segment, conversation in enumerate(conversations):
        n = len(conversation)
        end = start + n
        if end > seq_length:
            raise ValueError(f"{conversation.source}: does not fit ({end} > seq_length {seq_length})")
        tokens[start:end] = conversation.ids
        labels[start:end - 1] = conversation.ids[1:]
        loss_mask[start:end - 1] = conversation.targets[1:]
        position_ids[start:end] = np.arange(n)
        segment_ids[start:end] = segment
        start = end
    if start < seq_length:  # padding: its own final segment, positions from 0, no loss
        position_ids[start:] = np.arange(seq_length - start)
        segment_ids[start:] = len(conversations) if start > 0 else 0
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "position_ids": position_ids,
            "segment_ids": segment_ids}


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count)


class PackedConversations:
    """Map-style dataset of packed samples over ``epochs`` reshuffled passes of ``conversations``.

    ``min_samples``: epochs are added until there are at least this many samples (the run's need).
    """

    def __init__(self, conversations: Sequence[EncodedConversation], seq_length: int, eod_id: int, *,
                 seed: int, min_samples: int = 1, shuffle: bool = True, open_bins: int = OPEN_BINS) -> None:
        if not conversations:
            raise ValueError("no conversations to pack")
        self.conversations = list(conversations)
        self.seq_length = seq_length
        self.eod_id = eod_id
        lengths = [len(c) for c in self.conversations]
        self.bins: list[list[int]] = []
        self.epochs = 0
        while len(self.bins) < max(min_samples, 1):
            order = epoch_order(len(lengths), seed, self.epochs) if shuffle else np.arange(len(lengths))
            self.bins.extend(first_fit(lengths, order, seq_length, open_bins))
            self.epochs += 1
        used = sum(lengths) * self.epochs
        self.fill = used / (len(self.bins) * seq_length)

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self.bins):
            raise IndexError(f"sample {index} out of range [0, {len(self.bins)})")
        return build_sample([self.conversations[i] for i in self.bins[index]], self.seq_length, self.eod_id)

    def describe(self) -> dict:
        return {"samples": len(self.bins), "conversations": len(self.conversations), "epochs": self.epochs,
                "fill": round(self.fill, 4),
                "target_tokens_per_epoch": int(sum(c.num_targets for c in self.conversations))}
