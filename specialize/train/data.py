"""Pretraining data: the Arrow shard sets of ``specialize corpus build``, blended by megatron-core.

We reuse megatron-core's dataset machinery rather than writing our own sampler: ``GPTDataset`` builds
the document / sample / shuffle indices (its C++ helper concatenates documents into ``seq_length + 1``
token windows across document boundaries, EOD between them), and ``BlendedMegatronDatasetBuilder``
splits train/valid and blends several shard sets by weight. The only piece we add is the low-level
dataset ``ShardCorpus``: the documents of one shard directory, memory-mapped from Arrow (no copy
of the corpus into RAM, no re-tokenisation), in the shape GPTDataset expects (``sequence_lengths``
and ``get(doc, offset, length)``).

Before anything is read, every shard set is checked against its ``manifest.json``: the tokenizer
fingerprint must equal the model's, and (by default) every shard's sha256, rows and tokens must match.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from specialize.corpus.manifest import MANIFEST_NAME, read_manifest
from specialize.corpus.shards import open_shard, shard_token_chunks
from specialize.train.config import DataConfig, parse_data_spec
from specialize.train.data_api import DataRequest, DataSplits

log = logging.getLogger(__name__)

DEFAULT_CORPUS_HINT = "specialize corpus build --domain code"


class ShardCorpus:
    """All documents of one shard directory as one indexable token store (memory-mapped).

    Document ``i`` is the ``i``-th row over the manifest's shards in manifest order; its tokens
    include the trailing EOD the corpus build appends, so consecutive documents are EOD-separated.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path_prefix = str(directory)
        manifest = read_manifest(str(directory))
        self._tables = []  # keep the memory maps alive
        self._values: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        lengths = []
        for shard in manifest["shards"]:
            table = open_shard(Path(directory) / shard["path"])
            self._tables.append(table)
            for values, offsets in shard_token_chunks(table):  # a record batch of a shard at a time
                self._values.append(values)
                self._offsets.append(offsets)
                lengths.append(np.diff(offsets))
        if not lengths or sum(len(x) for x in lengths) == 0:
            raise ValueError(f"{directory}/{MANIFEST_NAME}: the shard set holds no documents")
        all_lengths = np.concatenate(lengths)
        if all_lengths.max() > np.iinfo(np.int32).max:
            raise ValueError(f"{directory}: a document is longer than 2^31 tokens")
        self.sequence_lengths = all_lengths.astype(np.int32)
        self._first_doc = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in lengths], out=self._first_doc[1:])

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of document ``idx`` (the whole rest when length is None)."""
        shard = int(np.searchsorted(self._first_doc, idx, side="right")) - 1  # a record batch of a shard
        local = idx - self._first_doc[shard]
        start = int(self._offsets[shard][local]) + offset
        end = int(self._offsets[shard][local + 1]) if length is None else start + int(length)
        return self._values[shard][start:end]


class _TokenizerInfo:
    """The few tokenizer facts megatron's dataset config reads (eod, vocab size, a cache identity)."""

    def __init__(self, request: DataRequest) -> None:
        self.eod = request.eod_id
        self.vocab_size = request.vocab_size
        self.unique_identifiers = {"fingerprint": request.tokenizer_fingerprint, "eod": request.eod_id}

    @property
    def pad(self) -> int:  # no pad token: megatron then uses an id that never occurs
        raise NotImplementedError


def _shard_gpt_dataset_class():
    from megatron.core.datasets.gpt_dataset import GPTDataset

    class ShardGPTDataset(GPTDataset):
        """megatron GPTDataset whose low-level dataset is a ``ShardCorpus`` instead of .bin/.idx."""

        @staticmethod
        def numel_low_level_dataset(low_level_dataset: ShardCorpus) -> int:
            return len(low_level_dataset)

        @staticmethod
        def build_low_level_dataset(dataset_path: str, config) -> ShardCorpus:
            return ShardCorpus(dataset_path)

    return ShardGPTDataset


class SampleView:
    """Adapts a megatron GPT/Blended dataset to the ``data_api`` sample dict (numpy, segment_ids)."""

    def __init__(self, dataset, *, eod_id: int, reset_attention_mask: bool) -> None:
        self.dataset = dataset
        self.eod_id = eod_id
        self.reset_attention_mask = reset_attention_mask

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        item = self.dataset[int(index)]
        tokens = item["tokens"].numpy().astype(np.int64)
        if self.reset_attention_mask:  # a new segment starts right after each EOD
            segments = np.zeros(len(tokens), dtype=np.int32)
            np.cumsum(tokens[:-1] == self.eod_id, out=segments[1:])
        else:
            segments = np.zeros(len(tokens), dtype=np.int32)
        return {
            "tokens": tokens,
            "labels": item["labels"].numpy().astype(np.int64),
            "loss_mask": item["loss_mask"].numpy().astype(np.float32),
            "position_ids": item["position_ids"].numpy().astype(np.int64),
            "segment_ids": segments,
        }


def check_shard_sets(paths: list[str], fingerprint: str, verify_checksums: bool, *, cache_dir: Path | None = None) -> None:
    """Raise a clear error when a shard set is missing, from another tokenizer, or corrupt.

    Collective when a process group is up: every rank hashes its share and every rank raises the same
    error (see ``specialize.train.shard_check``); a verified corpus is remembered in ``cache_dir``.
    """
    import torch.distributed as dist

    from specialize.train.shard_check import check_part, remember_verified

    group = dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if group else (0, 1)
    found: list[str] = []
    try:
        for path in paths:
            if not (Path(path) / MANIFEST_NAME).is_file():
                hint = f"; build it with `{DEFAULT_CORPUS_HINT}`" if Path(path) == Path("checkpoints/corpus/code") else ""
                raise FileNotFoundError(f"{path}: no {MANIFEST_NAME}, so no corpus shards to train on{hint}")
            problems = check_part(path, fingerprint, verify_checksums, rank, world, cache_dir)
            if problems:
                found.append(f"{path}: shards do not match their manifest:\n"
                             + "\n".join(f"  {p.shard}: {p.problem}" for p in problems))
    except (OSError, ValueError) as err:
        found.append(f"{type(err).__name__}: {err}")
    everyone: list[list[str]] = [found]
    if group:
        everyone = [[] for _ in range(world)]
        dist.all_gather_object(everyone, found)
    errors = [message for part in everyone for message in part]
    if errors:
        raise ValueError("\n".join(dict.fromkeys(errors)))
    if rank == 0 and verify_checksums:
        remember_verified(paths, cache_dir)


class ShardBlendProvider:
    """``DatasetProvider`` for continual pretraining: a weighted blend of shard directories."""

    def __init__(self, data: DataConfig) -> None:
        self.data = data
        specs = [parse_data_spec(p) for p in data.paths]
        self.paths = [str(Path(p)) for p, _ in specs]
        self.weights = [w for _, w in specs]

    def build(self, request: DataRequest) -> DataSplits:
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

        cache = request.cache_dir or self.data.cache_dir
        check_shard_sets(self.paths, request.tokenizer_fingerprint, self.data.verify_checksums,
                         cache_dir=Path(cache) if cache else None)

        config = GPTDatasetConfig(
            random_seed=request.seed,
            sequence_length=request.seq_length,
            blend=(self.paths, self.weights if len(self.paths) > 1 else None),
            split=self.data.split,
            path_to_cache=cache,
            tokenizer=_TokenizerInfo(request),
            reset_position_ids=self.data.reset_position_ids,
            reset_attention_mask=self.data.reset_attention_mask,
            eod_mask_loss=self.data.eod_mask_loss,
            create_attention_mask=False,
        )
        if cache:
            os.makedirs(cache, exist_ok=True)
        sizes = [request.train_samples, request.valid_samples, 0]
        logging.getLogger("megatron.core.datasets").setLevel(logging.WARNING)
        train, valid, _ = BlendedMegatronDatasetBuilder(
            _shard_gpt_dataset_class(), sizes, lambda: True, config
        ).build()
        if train is None or len(train) == 0:
            raise ValueError(f"{self.paths}: no training samples of {request.seq_length + 1} tokens (corpus too small for split {self.data.split!r}?)")
        view = lambda ds: SampleView(ds, eod_id=request.eod_id, reset_attention_mask=self.data.reset_attention_mask)
        return DataSplits(
            train=view(train),
            valid=view(valid) if valid is not None and len(valid) > 0 else None,
            description={
                "paths": self.paths,
                "weights": self.weights,
                "split": self.data.split,
                "train_samples": len(train),
                "valid_samples": len(valid) if valid is not None else 0,
            },
        )
