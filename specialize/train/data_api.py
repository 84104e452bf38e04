"""The contract between the training runtime and whatever feeds it samples.

Continual pretraining (Arrow shard blend, ``specialize.train.data``) and SFT (packed ChatML samples,
``specialize.sft``) differ only in their data; the loop in ``specialize.train.runtime`` is shared. The
runtime never looks inside a provider: it asks it once for datasets, then reads samples by index.

What a provider yields
----------------------
``DatasetProvider.build(request)`` returns ``DataSplits`` whose ``train`` (and optional ``valid``) are
map-style datasets: ``len(ds)`` and ``ds[i]`` for ``0 <= i < len(ds)``. ``ds[i]`` must be a pure
function of ``i`` and of the request (same index, same sample, in every process and after a restart):
this is what makes resume exact. Shuffling is the provider's job, deterministic from ``request.seed``;
the runtime reads indices in order ``consumed_samples, consumed_samples + 1, ...`` and each data-parallel
rank takes its slice of every global batch, like megatron's ``MegatronPretrainingSampler``.

Each sample is a ``dict[str, numpy.ndarray]``, all arrays of length ``S = request.seq_length``:

``tokens``        int64 [S]   input ids fed to the model.
``labels``        int64 [S]   the id to predict at each position (for pretraining: the next token,
                              i.e. a window of ``S + 1`` corpus tokens gives ``tokens = w[:-1]``,
                              ``labels = w[1:]``). Any id in ``[0, vocab_size)``; masked positions
                              still need a valid id (use the EOD id).
``loss_mask``     float32 [S] 1.0 where the label counts in the loss, 0.0 elsewhere (prompt tokens in SFT,
                              padding). The loss is ``sum(ce * loss_mask) / sum(loss_mask)`` over the
                              whole global batch, so samples with more supervised tokens weigh more.
``position_ids``  int64 [S]   rotary positions. ``arange(S)`` when documents share one position space;
                              restarted at 0 at each document start when the provider resets positions.
``segment_ids``   int32 [S]   document boundaries of a packed sample: non-decreasing, starting at 0,
                              incremented where a new document starts (``[0,0,0,1,1,2,2,2]`` packs three
                              documents). All zeros means "one causal attention span" (no reset). The
                              runtime turns this into a block-diagonal causal mask for the local (CPU)
                              attention, or into ``cu_seqlens`` (``PackedSeqParams``) for flash / TE
                              attention, so a token never attends across a boundary when they differ.
                              Padding at the end of a sample gets its own final segment with loss_mask 0.

``validate_sample`` checks a sample against this contract with errors that name the field; the runtime
calls it on the first sample of each split, providers' tests should call it on every sample they build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

SAMPLE_FIELDS: dict[str, type] = {
    "tokens": np.int64,
    "labels": np.int64,
    "loss_mask": np.float32,
    "position_ids": np.int64,
    "segment_ids": np.int32,
}


@dataclass(frozen=True)
class DataRequest:
    """Everything the runtime knows that a provider needs to build its datasets.

    ``train_samples`` / ``valid_samples`` are the number of samples the run will read (global batch x
    steps, and global batch x eval iterations x number of evaluations): a provider sizes its epochs from
    them (megatron's GPTDataset does) and may return a longer dataset, never a shorter one without saying
    so (the runtime then wraps around and logs it).
    """

    seq_length: int
    seed: int
    train_samples: int
    valid_samples: int
    vocab_size: int  # the tokenizer's true size; every id must be below it
    eod_id: int
    tokenizer_fingerprint: str  # providers reading pre-tokenised data must check it matches
    cache_dir: str | None = None  # where a provider may write index files (shuffle orders)


@runtime_checkable
class SampleDataset(Protocol):
    """Map-style dataset of samples as described in the module docstring."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


@dataclass
class DataSplits:
    """The datasets of one run plus a JSON-able description saved with the resolved config."""

    train: SampleDataset
    valid: SampleDataset | None = None
    description: dict = field(default_factory=dict)


@runtime_checkable
class DatasetProvider(Protocol):
    """Builds the run's datasets. Construct it with its own options; the runtime calls ``build`` once
    per process, after torch.distributed is initialised (a provider may use rank 0 to write index caches
    and a barrier; every rank must end up with identical datasets)."""

    def build(self, request: DataRequest) -> DataSplits: ...


def validate_sample(sample: dict[str, np.ndarray], seq_length: int, vocab_size: int, where: str = "sample") -> None:
    """Raise ValueError naming ``where`` and the field when ``sample`` breaks the contract above."""
    missing = [name for name in SAMPLE_FIELDS if name not in sample]
    if missing:
        raise ValueError(f"{where}: missing fields {missing} (a sample needs {list(SAMPLE_FIELDS)})")
    for name, dtype in SAMPLE_FIELDS.items():
        array = sample[name]
        if not isinstance(array, np.ndarray) or array.shape != (seq_length,):
            shape = getattr(array, "shape", type(array).__name__)
            raise ValueError(f"{where}: field {name!r} has shape {shape}, expected ({seq_length},)")
        if array.dtype != dtype:
            raise ValueError(f"{where}: field {name!r} has dtype {array.dtype}, expected {np.dtype(dtype)}")
    for name in ("tokens", "labels"):
        ids = sample[name]
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(f"{where}: field {name!r} has ids outside [0, {vocab_size}) (min {ids.min()}, max {ids.max()})")
    mask = sample["loss_mask"]
    if not np.all((mask == 0.0) | (mask == 1.0)):
        raise ValueError(f"{where}: field 'loss_mask' must hold only 0.0 and 1.0")
    segments = sample["segment_ids"]
    if segments[0] != 0 or np.any(np.diff(segments) < 0) or np.any(np.diff(segments) > 1):
        raise ValueError(f"{where}: field 'segment_ids' must start at 0 and grow by 0 or 1 per position")
    if sample["position_ids"].min() < 0:
        raise ValueError(f"{where}: field 'position_ids' has negative positions")
