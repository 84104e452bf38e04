"""Held-out loss of a model on a corpus: the number that says whether specialisation worked.

Evaluates the validation split of a corpus build (the same document split ``specialize train`` holds
out with the same ``split`` setting, so these documents were never trained on) with our megatron model,
single process. ``--from`` accepts what ``specialize train`` accepts: a preset (random weights from the
seed, i.e. exactly a run's starting point), a specialize checkpoint, or a Hugging Face directory.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HeldoutResult:
    source: str
    corpus: str
    loss: float  # mean next-token cross entropy (nats/token) over the evaluated tokens
    tokens: int
    samples: int
    seq_length: int

    def to_dict(self) -> dict:
        return asdict(self)


def heldout_loss(
    source: str,
    corpus_dir: str,
    *,
    seq_length: int = 128,
    samples: int = 64,
    micro_batch: int = 8,
    split: str = "98,2,0",
    seed: int = 1234,
) -> HeldoutResult:
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import load_model_checkpoint
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.tokenization import load_tokenizer
    from specialize.train.config import DataConfig
    from specialize.train.data import ShardBlendProvider
    from specialize.train.data_api import DataRequest
    from specialize.train.starting_point import resolve_model_source

    initialize_parallel(tp=1, pp=1, seed=seed)
    try:
        with tempfile.TemporaryDirectory(prefix="specialize-eval-") as scratch:
            preset, init_dir, tokenizer_source = resolve_model_source(source, __import__("pathlib").Path(scratch), 1, 1)
            tokenizer = load_tokenizer(tokenizer_source)
            model = build_gpt_model(preset, transformer_config(preset), parallel_output=False)
            if init_dir is not None:
                load_model_checkpoint(model, init_dir)
            model.eval()
            provider = ShardBlendProvider(DataConfig(paths=[corpus_dir], split=split, cache_dir=scratch))
            request = DataRequest(seq_length=seq_length, seed=seed, train_samples=samples, valid_samples=samples,
                                  vocab_size=tokenizer.vocab_size, eod_id=tokenizer.eod_id,
                                  tokenizer_fingerprint=tokenizer.fingerprint, cache_dir=scratch)
            valid = provider.build(request).valid
            if valid is None or len(valid) == 0:
                raise ValueError(f"{corpus_dir}: no held-out samples for split {split!r}")
            count = min(samples, len(valid))
            total = tokens = 0.0
            with torch.no_grad():
                for start in range(0, count, micro_batch):
                    batch = [valid[i] for i in range(start, min(count, start + micro_batch))]
                    stack = lambda name: torch.from_numpy(np.stack([s[name] for s in batch]))
                    losses = model(stack("tokens"), stack("position_ids"), None, labels=stack("labels"))
                    mask = stack("loss_mask").float()
                    total += float((losses.float() * mask).sum())
                    tokens += float(mask.sum())
            return HeldoutResult(source, corpus_dir, total / max(tokens, 1.0), int(tokens), count, seq_length)
    finally:
        destroy_parallel()
