"""Reading and writing Hugging Face weight files one tensor at a time.

Reading: every ``*.safetensors`` shard (with or without ``model.safetensors.index.json``) has its
header read and checked when the directory is opened, so a truncated download is caught before
any conversion work; a tensor is read only when asked for, through a mapping that is released
right after, so the file's pages do not accumulate in memory next to the model being filled. Legacy
``pytorch_model*.bin`` files load with ``torch.load(weights_only=True)``: a checkpoint can never
run code. Writing: tensors are grouped into shards up to a byte budget, each shard is produced,
written and dropped before the next, and an index maps names to shards (what ``transformers``
loads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from safetensors import SafetensorError, safe_open

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not match the model it claims to be."""


class HFWeights:
    """Name -> tensor access over a HF checkpoint directory, reading each tensor on demand."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._file_of: dict[str, Path] = {}
        #: name -> (shape, dtype) read from the safetensors headers when the directory is opened
        self._meta: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._bin_cache: dict[Path, dict[str, torch.Tensor]] = {}
        safetensors_files = sorted(self.directory.glob("*.safetensors"))
        if safetensors_files:
            self._open_safetensors(safetensors_files)
        else:
            self._open_bin()

    # -- opening ---------------------------------------------------------------------------------
    def _open_safetensors(self, files: list[Path]) -> None:
        index_path = self.directory / SAFETENSORS_INDEX
        if index_path.is_file():
            weight_map = self._read_index(index_path)
            files = sorted({self.directory / name for name in weight_map.values()})
        for path in files:
            if not path.is_file():
                raise CheckpointError(f"{path}: listed in {SAFETENSORS_INDEX} but missing")
            try:
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    for name in handle.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                        info = handle.get_slice(name)
                        self._file_of[name] = path
                        self._meta[name] = (tuple(info.get_shape()), _SAFETENSORS_DTYPES[info.get_dtype()])
            except (SafetensorError, OSError) as err:
                raise CheckpointError(
                    f"{path}: not a readable safetensors file ({err}); the download may be truncated, fetch it again"
                ) from err
        if index_path.is_file():
            for name, file_name in weight_map.items():
                if self._file_of.get(name) != self.directory / file_name:
                    raise CheckpointError(f"{self.directory / file_name}: tensor {name} listed in {SAFETENSORS_INDEX} is not in it")

    def _open_bin(self) -> None:
        index_path = self.directory / BIN_INDEX
        if index_path.is_file():
            files = sorted({self.directory / name for name in self._read_index(index_path).values()})
        else:
            files = sorted(self.directory.glob("pytorch_model*.bin"))
        if not files:
            raise CheckpointError(f"{self.directory}: no weights found (looked for *.safetensors and pytorch_model*.bin)")
        for path in files:
            state = self._load_bin(path)
            for name in state:
                self._file_of[name] = path

    def _load_bin(self, path: Path) -> dict[str, torch.Tensor]:
        if path not in self._bin_cache:
            try:
                # weights_only: refuse pickled code; mmap: tensors are paged in on use.
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as err:
                raise CheckpointError(f"{path}: cannot load as a weights-only PyTorch file ({err})") from err
            if not isinstance(state, dict):
                raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
            self._bin_cache = {path: state}  # keep one .bin shard mapped at a time
        return self._bin_cache[path]

    @staticmethod
    def _read_index(path: Path) -> dict[str, str]:
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: not a valid weight index ({err})") from err
        return weight_map

    # -- access ----------------------------------------------------------------------------------
    def names(self) -> set[str]:
        return set(self._file_of)

    def file_of(self, name: str) -> Path:
        try:
            return self._file_of[name]
        except KeyError:
            raise CheckpointError(f"{self.directory}: tensor {name} is missing from the checkpoint") from None

    def shape(self, name: str) -> tuple[int, ...]:
        path = self.file_of(name)
        if name in self._meta:
            return self._meta[name][0]
        return tuple(self._load_bin(path)[name].shape)

    def dtype(self, name: str) -> torch.dtype:
        path = self.file_of(name)
        if name in self._meta:
            return self._meta[name][1]
        return self._load_bin(path)[name].dtype

    def get(self, name: str, expected_shape: Sequence[int] | None = None) -> torch.Tensor:
        """Read one tensor, checking its shape first (error names the tensor and its file)."""
        path = self.file_of(name)
        if expected_shape is not None and self.shape(name) != tuple(expected_shape):
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(self.shape(name))}, expected {list(expected_shape)}"
            )
        try:
            if name in self._meta:
                # A fresh mapping per tensor, unmapped on exit: the file's pages do not stay
                # resident (and counted in RSS) alongside the model being filled.
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    return handle.get_tensor(name)
            return self._load_bin(path)[name]
        except SafetensorError as err:
            raise CheckpointError(f"{path}: cannot read tensor {name} ({err})") from err


# -- writing ------------------------------------------------------------------------------------------

@dataclass
class TensorGroup:
    """HF tensors produced together (e.g. q, k, v from one fused megatron tensor)."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtype: torch.dtype
    produce: Callable[[], list[torch.Tensor]]

    @property
    def nbytes(self) -> int:
        size = torch.tensor([], dtype=self.dtype).element_size()
        return sum(int(torch.Size(shape).numel()) * size for shape in self.shapes)


def plan_shards(groups: Sequence[TensorGroup], max_shard_bytes: int) -> list[list[TensorGroup]]:
    """Greedy, order-preserving packing of groups into shards of at most ``max_shard_bytes``
    (a group larger than the budget gets a shard of its own)."""
    shards: list[list[TensorGroup]] = [[]]
    used = 0
    for group in groups:
        if shards[-1] and used + group.nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(group)
        used += group.nbytes
    return [shard for shard in shards if shard]


def write_sharded_safetensors(directory: Path, groups: Iterable[TensorGroup], max_shard_bytes: int) -> Path:
    """Write ``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``; returns the index.

    Each shard is streamed: the header comes from the plan (names, shapes, dtype), then every group
    is produced, written and dropped. We write the (simple, documented) safetensors layout ourselves
    because ``safetensors.torch.save_file`` first turns the whole shard into ``bytes``, which would
    double the memory of a one-shard export; the files are read back with ``safetensors`` itself in
    the tests and by ``transformers``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(list(groups), max_shard_bytes)
    weight_map: dict[str, str] = {}
    total = 0
    for number, shard in enumerate(shards, start=1):
        file_name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        _stream_shard(directory / file_name, shard)
        for group in shard:
            weight_map.update(dict.fromkeys(group.names, file_name))
            total += group.nbytes
    index = directory / SAFETENSORS_INDEX
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return index


_DTYPE_NAMES = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}


def _stream_shard(path: Path, shard: Sequence[TensorGroup]) -> None:
    """One safetensors file: 8-byte little-endian header length, JSON header padded to 8 bytes, data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for group in shard:
        element = torch.tensor([], dtype=group.dtype).element_size()
        for name, shape in zip(group.names, group.shapes):
            size = int(torch.Size(shape).numel()) * element
            header[name] = {"dtype": _DTYPE_NAMES[group.dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(len(encoded).to_bytes(8, "little"))
        out.write(encoded)
        for group in shard:
            produced = group.produce()
            for name, shape, tensor in zip(group.names, group.shapes, produced):
                if tuple(tensor.shape) != tuple(shape):
                    raise AssertionError(f"{name}: produced shape {list(tensor.shape)}, planned {list(shape)}")
                data = tensor.detach().to("cpu", group.dtype).contiguous().reshape(-1)
                out.write(data.view(torch.uint8).numpy().data)
            del produced
    partial.rename(path)
