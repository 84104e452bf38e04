"""Tensors of a specialize (megatron dist-checkpoint) model checkpoint, read one at a time, on CPU.

The export used to build a TP=1 model on GPU 0 and load everything into it: a 72B export needed one
GPU to hold 72B parameters while rank 0 of the finished job still held its own share. A torch_dist
checkpoint is PyTorch Distributed Checkpoint (DCP) underneath and stores each parameter as one global
tensor (TP shards laid out as the TP=1 tensor; the layers of ``decoder.layers.*`` stacked along a
leading axis), so any parameter of any layer can be read alone: a DCP load plan that asks for that one
slice reads just the bytes of the chunks it overlaps. Memory is one tensor at a time; no model is built
(no attention backend, no ``NVTE_*`` checks), no process group is needed, nothing touches a GPU.

megatron's own ``dist_checkpointing.load`` cannot do this in one process: it assumes the shards of a
tensor it was not asked for live on another rank, and refuses a partial view with one rank.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import load as dcp_load
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, TensorStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan

try:  # public from torch 2.10 on; the NGC images of 2025 have the underscored name
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list
except ImportError:  # pragma: no cover - older torch
    from torch.distributed.checkpoint.planner_helpers import _create_read_items_for_chunk_list as create_read_items_for_chunk_list

from specialize.model.checkpoint import canonical_key
from specialize.model.families.tables import LAYER_PATTERN


class _SlicePlanner(DefaultLoadPlanner):
    """Reads the region of one stored tensor that ``target`` covers, starting at ``offsets``."""

    def __init__(self, key: str, offsets: tuple[int, ...]) -> None:
        super().__init__()
        self.key, self.offsets = key, offsets

    def create_local_plan(self) -> LoadPlan:
        target = self.state_dict[self.key]
        wanted = ChunkStorageMetadata(offsets=torch.Size(self.offsets), sizes=target.size())
        return LoadPlan(create_read_items_for_chunk_list(self.key, self.metadata.state_dict_metadata[self.key], [wanted]))

    def resolve_tensor(self, read_item) -> torch.Tensor:
        view = self.state_dict[self.key]
        for dim, (start, length) in enumerate(zip(read_item.dest_offsets, read_item.lengths)):
            view = view.narrow(dim, start, length)
        return view


class CheckpointTensors:
    """``get("decoder.layers.3.mlp.linear_fc2.weight")`` -> that layer's full (TP-unsharded) tensor."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = str(directory)
        metadata = FileSystemReader(self.directory).read_metadata().state_dict_metadata
        # canonical name (TE and local specs alike) -> (stored key, global shape, dtype)
        self._entries = {canonical_key(key): (key, tuple(value.size), value.properties.dtype)
                         for key, value in metadata.items() if isinstance(value, TensorStorageMetadata)}

    def _entry(self, name: str):
        match = LAYER_PATTERN.match(name)
        stacked, layer = (match[1] + match[3].lstrip("."), int(match[2])) if match else (name, None)
        entry = self._entries.get(stacked)
        if entry is None:
            raise KeyError(f"{self.directory}: no tensor {stacked!r} in the checkpoint (it has {', '.join(sorted(self._entries)[:4])}, ...)")
        if layer is not None and not 0 <= layer < entry[1][0]:
            raise KeyError(f"{self.directory}: layer {layer} of {entry[0]!r}, but the checkpoint has {entry[1][0]} layers")
        return entry, layer

    def shape(self, name: str) -> tuple[int, ...]:
        (_, shape, _), layer = self._entry(name)
        return shape[1:] if layer is not None else shape

    def get(self, name: str) -> torch.Tensor:
        (key, shape, dtype), layer = self._entry(name)
        if layer is None:
            target, offsets = torch.empty(shape, dtype=dtype), (0,) * len(shape)
        else:
            target, offsets = torch.empty((1, *shape[1:]), dtype=dtype), (layer,) + (0,) * (len(shape) - 1)
        dcp_load({key: target}, storage_reader=FileSystemReader(self.directory), planner=_SlicePlanner(key, offsets), no_dist=True)
        return target[0] if layer is not None else target
