"""From dataset indices to micro-batches, the way megatron's pretraining sampler orders them.

Global batch ``k`` is samples ``[k*G, (k+1)*G)`` of the dataset (``G`` = global batch size). Within
it, micro-batch ``m`` of data-parallel rank ``r`` is the ``micro_batch_size`` samples starting at
``k*G + m*mbs*dp + r*mbs``: the same set of samples makes up a step whatever the DP size, which is
what lets DP=2 reproduce DP=1, and resuming needs nothing but the step number.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    A document is a run of equal segment ids (a row of zeros is one document: no boundaries). This is
    what MFU counts, so packed short documents are not credited with a full sequence's attention.
    """
    rows = segment_ids.detach().cpu().to(torch.int64)
    change = torch.diff(rows, dim=1) != 0
    total = 0.0
    for row in change:
        bounds = torch.cat([torch.tensor([0]), torch.nonzero(row).flatten() + 1, torch.tensor([rows.shape[1]])])
        total += float((torch.diff(bounds).double() ** 2).sum()) / 2
    return total


class StepBatches:
    """Iterator over one step's micro-batches (megatron's schedules call ``next`` once per micro-batch)."""

    def __init__(self, dataset: SampleDataset, indices: list[list[int]], device: torch.device) -> None:
        batches = [collate([dataset[i] for i in chunk]) for chunk in indices]
        self.attended_pairs = sum(attended_pairs(b.segment_ids) for b in batches)  # for MFU
        self._batches = iter([b.to(device) for b in batches])

    def __iter__(self):
        return self

    def __next__(self) -> MicroBatch:
        return next(self._batches)


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
