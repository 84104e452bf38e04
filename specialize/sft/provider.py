"""The SFT dataset provider for the shared training runtime (``specialize.train.data_api``).

Chat JSONL -> conversations (bad rows counted) -> ChatML ids with targets -> over-length policy ->
a held-out validation share -> packed samples. Every process builds the same datasets from the
same files and seed, so nothing is written or synchronised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from specialize.sft.chatml import DEFAULT_SYSTEM_PROMPT, MaskOptions, encode_conversations
from specialize.sft.conversations import read_conversations
from specialize.sft.packing import PackedConversations, fit_to_length
from specialize.tokenization import QwenTokenizer
from specialize.train.data_api import DataRequest, DataSplits


@dataclass
class SftDataConfig:
    """The ``sft:`` section of ``megatron_configs/sft-*.yaml`` (override with ``--set sft.key=value``)."""

    data: list = field(default_factory=list)  # chat JSONL files; empty: the embedded sample of `domain`
    domain: str = "code"  # code | math | code,math: the embedded sample(s) used when no data is given
    train_on_prompt: bool = False  # train every token, prompts included
    last_assistant_only: bool = False  # train only the last assistant turn's content
    markers: str = "qwen"  # qwen (Qwen finetune.py: im_start/im_end/"\n" of every turn trained) | assistant
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # inserted when a conversation has none; null: none
    overlength: str = "drop"  # drop | truncate conversations longer than train.seq_length
    valid_fraction: float = 0.02  # of the conversations held out for validation (0: none)
    max_valid: int = 500  # cap on held-out conversations
    export: bool = True  # write a Hugging Face checkpoint at the end of the run
    export_dir: str | None = None  # where; default <output>/hf

    def domains(self) -> list[str]:
        return [part.strip() for part in self.domain.split(",") if part.strip()]

    def mask_options(self) -> MaskOptions:
        return MaskOptions(train_on_prompt=self.train_on_prompt, last_assistant_only=self.last_assistant_only,
                           markers=self.markers, system_prompt=self.system_prompt)


def split_valid(count: int, fraction: float, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, valid indices): a seeded random share held out, each list in file order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"sft.valid_fraction {fraction}: expected 0 <= fraction < 1")
    n_valid = min(cap, math.floor(count * fraction))
    held = np.sort(np.random.default_rng([seed, 0x5F7]).permutation(count)[:n_valid])
    keep = np.setdiff1d(np.arange(count), held)
    return keep, held


class SFTProvider:
    """``DatasetProvider`` for SFT: reads ``files`` with ``tokenizer`` (the model's, checked by fingerprint)."""

    def __init__(self, options: SftDataConfig, files: list[str | Path], tokenizer: QwenTokenizer) -> None:
        if not files:
            raise ValueError("SFT needs at least one chat JSONL file")
        self.options = options
        self.files = [Path(f) for f in files]
        self.tokenizer = tokenizer

    def build(self, request: DataRequest) -> DataSplits:
        tok = self.tokenizer
        if tok.fingerprint != request.tokenizer_fingerprint:
            raise ValueError(f"the SFT data was tokenized with {tok.name} ({tok.source or 'embedded'}) but the model "
                             f"uses a different tokenizer ({request.tokenizer_fingerprint[:19]}...)")
        conversations, read = read_conversations(self.files)
        encoded = encode_conversations(tok, conversations, self.options.mask_options())
        keep, held = split_valid(len(encoded), self.options.valid_fraction, self.options.max_valid, request.seed)
        train, train_fit = fit_to_length([encoded[i] for i in keep], request.seq_length, self.options.overlength)
        valid, valid_fit = fit_to_length([encoded[i] for i in held], request.seq_length, self.options.overlength)
        if not train:
            raise ValueError(f"no SFT conversation left to train on from {', '.join(map(str, self.files))}: "
                             f"{read.summary()}; length policy: {train_fit.as_dict()}")
        train_ds = PackedConversations(train, request.seq_length, tok.eod_id, seed=request.seed,
                                       min_samples=request.train_samples)
        valid_ds = PackedConversations(valid, request.seq_length, tok.eod_id, seed=request.seed, shuffle=False) if valid else None
        description = {
            "kind": "sft",
            "files": [str(f) for f in self.files],
            "read": read.as_dict(),
            "masking": self.options.mask_options().__dict__,
            "length_policy": self.options.overlength,
            "train": {**train_ds.describe(), **{f"fit_{k}": v for k, v in train_fit.as_dict().items() if k != "examples"}},
            "valid": {**valid_ds.describe(), **{f"fit_{k}": v for k, v in valid_fit.as_dict().items() if k != "examples"}}
            if valid_ds else None,
            "dropped_examples": {**train_fit.examples},
        }
        return DataSplits(train_ds, valid_ds, description)
