"""From dataset indices to micro-batches, the way megatron's pretraining sampler orders them.

Global batch ``k`` is samples ``[k*G, (k+1)*G)`` of the dataset (``G`` = global batch size). Within
it, micro-batch ``m`` of data-parallel rank ``r`` is the ``micro_batch_size`` samples starting at
``k*G + m*mbs*dp + r*mbs``: the same set of samples makes up a step whatever the DP size, which is
what lets DP=2 reproduce DP=1, and resuming needs nothing but the step number.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from specialize.train.data_api import SampleDataset, validate_sample


@dataclass
class MicroBatch:
    tokens: torch.Tensor  # int64 [b, s]
    labels: torch.Tensor  # int64 [b, s]
    loss_mask: torch.Tensor  # float32 [b, s]
    position_ids: torch.Tensor  # int64 [b, s]
    segment_ids: torch.Tensor  # int32 [b, s]

    @property
    def has_segments(self) -> bool:
        return bool(self.segment_ids.any())

    def to(self, device: torch.device) -> "MicroBatch":
        return MicroBatch(*(t.to(device, non_blocking=True) for t in
                            (self.tokens, self.labels, self.loss_mask, self.position_ids, self.segment_ids)))


def collate(samples: list[dict[str, np.ndarray]]) -> MicroBatch:
    stack = lambda name: torch.from_numpy(np.stack([s[name] for s in samples]))
    return MicroBatch(stack("tokens"), stack("labels"), stack("loss_mask"), stack("position_ids"), stack("segment_ids"))


def microbatch_indices(step: int, *, global_batch: int, micro_batch: int, dp_rank: int, dp_size: int,
                       num_microbatches: int, dataset_len: int) -> list[list[int]]:
    """Dataset indices of this DP rank's micro-batches for (0-based) ``step``; wraps past the end."""
    base = step * global_batch
    out = []
    for m in range(num_microbatches):
        start = base + m * micro_batch * dp_size + dp_rank * micro_batch
        out.append([(start + i) % dataset_len for i in range(micro_batch)])
    return out


def attended_pairs(segment_ids: torch.Tensor) -> float:
    """Query-key pairs that causal attention computes in these rows: l^2/2 per document of l tokens.

    Documents are those the attention sees (``attention.cu_seqlens``: runs of equal ids, each row starting
    one; a row of zeros is one document). This is what MFU counts, so packed short documents are not
    credited with a full sequence's attention.
    """
    from specialize.train.attention import cu_seqlens

    lengths = torch.diff(cu_seqlens(segment_ids.detach().cpu())).double()
    return float((lengths**2).sum()) / 2


class StepBatches:
    """Iterator over one step's micro-batches (megatron's schedules call ``next`` once per micro-batch).

    Collated on construction (in the prefetch thread when prefetching), in pinned memory when ``pin``,
    so that each micro-batch's copy to the GPU is asynchronous.
    """

    def __init__(self, dataset: SampleDataset, indices: list[list[int]], device: torch.device, *, pin: bool = False) -> None:
        batches = [collate([dataset[i] for i in chunk]) for chunk in indices]
        self.attended_pairs = sum(attended_pairs(b.segment_ids) for b in batches)  # for MFU
        if pin:
            batches = [MicroBatch(*(t.pin_memory() for t in (b.tokens, b.labels, b.loss_mask, b.position_ids, b.segment_ids)))
                       for b in batches]
        self._device = device
        self._batches = iter(batches)

    def __iter__(self):
        return self

    def __next__(self) -> MicroBatch:
        return next(self._batches).to(self._device)


class Prefetcher:
    """The next training step's ``StepBatches`` built in a background thread while this step computes."""

    def __init__(self, build: Callable[[int], StepBatches], *, enabled: bool, last_step: int) -> None:
        self._build, self._last_step = build, last_step
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="specialize-prefetch") if enabled else None
        self._next: tuple[int, Future] | None = None  # the step being built in the background, and its future

    def get(self, step: int) -> StepBatches:
        ready, self._next = self._next, None
        batches = ready[1].result() if ready is not None and ready[0] == step else self._build(step)
        if self._pool is not None and step + 1 < self._last_step:
            self._next = (step + 1, self._pool.submit(self._build, step + 1))
        return batches

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def check_dataset(dataset: SampleDataset, name: str, seq_length: int, vocab_size: int) -> None:
    """Validate the first sample against the data_api contract (cheap; catches a wrong provider early)."""
    if len(dataset) == 0:
        raise ValueError(f"{name} dataset is empty")
    validate_sample(dataset[0], seq_length, vocab_size, where=f"{name}[0]")


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[b, 1, s, s] bool, True where attention is NOT allowed: the future, or another document."""
    s = segment_ids.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return ~(same & causal)[:, None]
