"""Training checkpoint save and load: seconds, bytes written per rank and peak RSS per rank.

    PYTHONPATH=. python benchmarks/checkpoint.py                   # qwen2.5-0.5b block, 4 of its 24 layers, 2 CPU ranks
    PYTHONPATH=. python benchmarks/checkpoint.py --layers 24       # the whole 0.5B shape
    PYTHONPATH=. python benchmarks/checkpoint.py --size qwen-tiny  # seconds (smoke check)
    PYTHONPATH=. python benchmarks/checkpoint.py --formats dp_reshardable

The vocabulary is an 8,400-row one (random token ids), so the parameters are the blocks'. Each
``checkpoint.optimizer_format`` is measured in turn: ``dp_reshardable`` (the default: every rank writes
its own optimizer shard, nothing is gathered) and ``fully_reshardable`` (reloads at any TP/PP; DP rank 0
gathers its slice's optimizer state through gloo before writing, so its save holds that in host memory).

Each rank runs ``run_training`` for one step (random weights, random tokens) and saves, then a second
run resumes from that checkpoint (load) and saves again. The save and load calls of the runtime are
timed in every rank, with a thread sampling the rank's RSS during the call. Bytes written per rank are
the sizes of the ``__<rank>_*.distcp`` files in the checkpoint's ``model/`` and ``optimizer/`` (torch_dist
names each file by the rank that wrote it). With the fully parallel save strategy the replicated
tensors are split over the DP ranks, so both ranks write about half; without it rank 0 writes them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path


def _timed(function, record: dict, name: str):
    import psutil

    def wrapper(*args, **kwargs):
        process, peak, done = psutil.Process(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        before = process.memory_info().rss
        sampler.start()
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            record[name] = {"seconds": time.perf_counter() - started, "rss_before_gb": before / 1e9}
            done.set()
            sampler.join()
            record[name]["peak_rss_gb"] = max(peak[0], process.memory_info().rss) / 1e9

    return wrapper


def _rank(rank: int, world: int, port: int, size: str, layers: int | None, out: str, optimizer_format: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch
    from gpu_check import RandomProvider  # this folder is on sys.path when the script runs (and in spawned ranks)

    torch.set_num_threads(1)
    from specialize.train import runtime
    from specialize.train.config import RunConfig, apply_override

    record: dict = {}
    runtime.save_checkpoint = _timed(runtime.save_checkpoint, record, "save")
    runtime.load_checkpoint = _timed(runtime.load_checkpoint, record, "load")
    # The shape of the preset from random weights (no download); token ids from the embedded vocabulary.
    preset = _preset(size, layers)
    vocab = 8000
    for steps in (1, 2):
        config = RunConfig()
        for assignment in (f"output={out}/run", f"model.source={size}", f"train.steps={steps}", "train.seq_length=64",
                           "train.micro_batch_size=1", f"train.global_batch_size={world}", "log.eval_every=0",
                           "log.tensorboard=false", "log.progress=none", "optimizer.warmup_steps=0", "train.threads=1",
                           f"checkpoint.optimizer_format={optimizer_format}"):
            apply_override(config, assignment)
        runtime.run_training(config, RandomProvider(vocab), preset=preset)
        record[f"save_step{steps}"] = record.pop("save")
    Path(out, f"rank-{rank}.json").write_text(json.dumps(record))


def _preset(size: str, layers: int | None):
    from specialize.model.presets import get_preset

    preset = get_preset(size)
    return dataclasses.replace(preset, hf_repo=None, tokenizer=None, vocab_size=8400, tie_word_embeddings=False,
                               num_layers=layers or preset.num_layers)


def bytes_per_rank(checkpoint: Path) -> dict[int, int]:
    written: dict[int, int] = {}
    for path in checkpoint.rglob("*.distcp"):
        match = re.match(r"__(\d+)_", path.name)
        if match:
            written[int(match[1])] = written.get(int(match[1]), 0) + path.stat().st_size
    return written


def measure(args, optimizer_format: str) -> tuple[dict, dict]:
    import torch.multiprocessing as mp

    from specialize.model.parallel import free_port
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as out:
        mp.spawn(_rank, args=(args.ranks, free_port(), args.size, args.layers, out, optimizer_format), nprocs=args.ranks)
        records = {r: json.loads(Path(out, f"rank-{r}.json").read_text()) for r in range(args.ranks)}
        written = bytes_per_rank(Path(out, "run", "checkpoints", "step-000002"))
    return records, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="qwen2.5-0.5b")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--layers", type=int, default=None, help="fewer layers of the same block (default: 4 for the 0.5B shape)")
    parser.add_argument("--formats", default="dp_reshardable,fully_reshardable", help="checkpoint.optimizer_format values, comma-separated")
    args = parser.parse_args()
    if args.layers is None and args.size == "qwen2.5-0.5b":
        args.layers = 4
    preset = _preset(args.size, args.layers)
    print(f"{args.size} block x {preset.num_layers} layers: {preset.num_parameters() / 1e9:.2f} B parameters, fp32, {args.ranks} CPU ranks (DP={args.ranks}, "
          "distributed optimizer, fully parallel save/load)")
    for optimizer_format in args.formats.split(","):
        records, written = measure(args, optimizer_format)
        print(f"optimizer_format={optimizer_format}")
        for rank, record in records.items():
            save, load = record["save_step2"], record["load"]
            print(f"  rank {rank}: save {save['seconds']:.1f} s (peak RSS {save['peak_rss_gb']:.2f} GB, "
                  f"{save['peak_rss_gb'] - save['rss_before_gb']:+.2f} GB over the step's), wrote {written.get(rank, 0) / 1e9:.2f} GB; "
                  f"load {load['seconds']:.1f} s (peak RSS {load['peak_rss_gb']:.2f} GB)")
        total = sum(written.values())
        print(f"  checkpoint: {total / 1e9:.2f} GB in all; largest share {max(written.values()) / max(total, 1):.0%} (even split: {1 / args.ranks:.0%})")


if __name__ == "__main__":
    main()
