"""Training-step throughput: our megatron-core path vs a plain `transformers` Qwen2ForCausalLM step.

    PYTHONPATH=. python benchmarks/train_step.py [--steps 12] [--threads 2] [--shapes tiny,20m]

Both sides train the same architecture (Qwen2 block: RMSNorm, GQA attention with QKV bias, SwiGLU,
RoPE, untied embeddings) on the same batch shape, in fp32 on CPU, with AdamW(0.9, 0.95, wd 0.1) and
gradient clipping 1.0. Ours is the whole `specialize.train.runtime.run_training` step (megatron DDP,
distributed optimizer, forward_backward_func, loss reduction, logging, and the data loader reading
samples from a dataset); theirs is the bare loop `loss.backward(); clip; step`. Tokens/s is the median
over the steps after the first two (warm-up), best of ``--rounds`` alternating rounds per side
(on a machine shared with other jobs one round can be off by 30% either way). Also printed: the share of a step our data loader takes
(reading a global batch of shard-backed samples through megatron's GPTDataset), target < 1%.

On a GPU (if present) the same script runs both sides in bf16; the flash-attention comparison at a
Qwen-1.8B shape is `--shapes 1.8b --seq 4096` (not run on our CPU-only CI).

Long context: ``--seq 8192`` (any ``--seq`` of 4096 or more) measures our step at that length and at
2048 with the same tokens per step (micro-batches scaled), and prints the measured slow-down beside the
FLOPs model's (``specialize.train.metrics.step_flops``: attention grows with the sequence, the rest does
not), plus MFU where a peak is known (GPU). The HF side is skipped there: its eager attention would
materialise the s x s scores of every layer on CPU.

    PYTHONPATH=. python benchmarks/train_step.py --shapes tiny --seq 8192 --steps 6 --rounds 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {
    # name: (hidden, layers, heads, query groups, ffn)
    "tiny": (256, 4, 4, 2, 704),  # = qwen-tiny, ~6.7M parameters
    "20m": (512, 4, 8, 2, 1408),  # ~20M parameters with the 8.4k vocabulary
    "1.8b": (2048, 24, 16, 16, 5504),  # Qwen-1.8B's block (GPU only)
}


def make_preset(shape: str):
    from specialize.model.presets import get_preset

    hidden, layers, heads, groups, ffn = SHAPES[shape]
    return dataclasses.replace(get_preset("qwen-tiny"), name=f"bench-{shape}", hidden_size=hidden, num_layers=layers,
                               num_attention_heads=heads, num_query_groups=groups, ffn_hidden_size=ffn)


class RandomTokens:
    def __init__(self, count: int, seq: int, vocab: int):
        self.count, self.seq, self.vocab = count, seq, vocab

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        window = np.random.default_rng(i).integers(0, self.vocab, self.seq + 1)
        return {"tokens": window[:-1], "labels": window[1:], "loss_mask": np.ones(self.seq, np.float32),
                "position_ids": np.arange(self.seq), "segment_ids": np.zeros(self.seq, np.int32)}


class RandomProvider:
    def build(self, request):
        from specialize.train.data_api import DataSplits

        return DataSplits(RandomTokens(request.train_samples, request.seq_length, request.vocab_size - 1))


def megatron_records(preset, seq: int, micro: int, steps: int, workdir: Path, *extra: str) -> list[dict]:
    """The train records (after the 2 warm-up steps) of a run of ``steps`` steps."""
    from specialize.train.config import load_config
    from specialize.train.runtime import run_training

    run = workdir / f"{preset.name}-{seq}"
    config = load_config(None, [f"output={run}", f"train.steps={steps}", f"train.seq_length={seq}",
                                f"train.micro_batch_size={micro}", f"train.global_batch_size={micro}",
                                "log.eval_every=0", "log.progress=none", "log.tensorboard=false",
                                "checkpoint.resume=false", "optimizer.warmup_steps=0", *extra])
    config.checkpoint.save_every = 10**9  # the final save still happens; it is outside the step timing
    run_training(config, RandomProvider(), preset=preset)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train" and r["step"] > 2]


def long_context_scaling(preset, seq: int, micro: int, steps: int, workdir: Path) -> None:
    """Tokens/s at ``seq`` vs 2048 with the same tokens per step, measured and as the FLOPs model predicts."""
    from specialize.train.metrics import peak_flops, step_flops

    tokens = seq * micro
    short_micro = tokens // 2048
    peak = peak_flops(None)  # looked up from the GPU's name; None on CPU (no MFU)
    rows = []
    for length, batch in ((2048, short_micro), (seq, micro)):
        records = megatron_records(preset, length, batch, steps, workdir)
        rate = statistics.median(r["tokens_per_s"] for r in records)
        mfu = statistics.median(r["mfu"] for r in records) if peak else None
        predicted = step_flops(preset, tokens, batch * length * (length + 1) / 2)  # causal pairs
        rows.append((length, batch, rate, mfu, predicted, max(r["memory_gb"] for r in records)))
    print(f"{'seq':>6} {'micro':>5} {'tok/s':>9} {'MFU':>6} {'GFLOP/step':>11} {'memory GB':>11}  (GPU: peak allocated; CPU: RSS after the step)")
    for length, batch, rate, mfu, flops, memory in rows:
        print(f"{length:>6} {batch:>5} {rate:>9.0f} {f'{100 * mfu:.1f}%' if mfu else 'n/a':>6} {flops / 1e9:>11.1f} {memory:>11.2f}")
    (_, _, short_rate, _, short_flops, _), (_, _, long_rate, _, long_flops, _) = rows
    print(f"seq {seq} vs 2048 at {tokens} tokens per step: {short_rate / long_rate:.2f}x slower measured, "
          f"{long_flops / short_flops:.2f}x the FLOPs (attention's share of the step: "
          f"{1 - step_flops(preset, tokens, 0) / long_flops:.0%} at {seq}, {1 - step_flops(preset, tokens, 0) / short_flops:.0%} at 2048)")


def megatron_tokens_per_s(preset, seq: int, micro: int, steps: int, workdir: Path) -> float:
    return statistics.median(r["tokens_per_s"] for r in megatron_records(preset, seq, micro, steps, workdir))


def hf_tokens_per_s(preset, seq: int, micro: int, steps: int) -> float:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=preset.padded_vocab_size(1), hidden_size=preset.hidden_size,
                         intermediate_size=preset.ffn_hidden_size, num_hidden_layers=preset.num_layers,
                         num_attention_heads=preset.num_attention_heads, num_key_value_heads=preset.num_query_groups,
                         max_position_embeddings=preset.max_position_embeddings, rope_theta=preset.rotary_base,
                         rms_norm_eps=preset.norm_epsilon, tie_word_embeddings=False, attention_dropout=0.0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = Qwen2ForCausalLM(config).to(device=device, dtype=dtype).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    data = RandomTokens(steps * micro, seq, preset.vocab_size - 1)
    rates = []
    for step in range(steps):
        started = time.perf_counter()
        batch = [data[step * micro + i] for i in range(micro)]
        tokens = torch.from_numpy(np.stack([b["tokens"] for b in batch])).to(device)
        labels = torch.from_numpy(np.stack([b["labels"] for b in batch])).to(device)
        logits = model(input_ids=tokens).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(micro * seq / (time.perf_counter() - started))
    return statistics.median(rates[2:])


def loader_seconds_per_batch(seq: int, global_batch: int, workdir: Path) -> float:
    """Time to read one global batch through megatron's GPTDataset over Arrow shards (after index build)."""
    import torch.distributed as dist

    from specialize.corpus.manifest import FORMAT
    from specialize.corpus.shards import rows_to_table, sha256_of, shard_name, table_to_ipc_bytes
    from specialize.train.batches import collate
    from specialize.train.config import DataConfig
    from specialize.train.data import ShardBlendProvider
    from specialize.train.data_api import DataRequest

    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = [{"tokens": rng.integers(0, 8000, int(rng.integers(50, 2000))).astype(np.uint32), "source": "s",
             "domain": "code", "language": "python", "num_bytes": 1} for _ in range(2000)]
    data = table_to_ipc_bytes(rows_to_table(rows))
    (corpus / shard_name(0, 1)).write_bytes(data)
    manifest = {"format": FORMAT, "tokenizer": {"fingerprint": "bench"}, "shards": [
        {"path": shard_name(0, 1), "rows": len(rows), "tokens": int(sum(len(r["tokens"]) for r in rows)), "sha256": sha256_of(data)}]}
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    request = DataRequest(seq_length=seq, seed=1, train_samples=200 * global_batch, valid_samples=0, vocab_size=8400,
                          eod_id=8192, tokenizer_fingerprint="bench", cache_dir=str(workdir / "cache"))
    train = ShardBlendProvider(DataConfig(paths=[str(corpus)], split="100,0,0")).build(request).train
    started = time.perf_counter()
    for step in range(50):
        collate([train[step * global_batch + i] for i in range(global_batch)])
    return (time.perf_counter() - started) / 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,20m")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (shared machines are noisy)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    if args.seq >= 4096:
        micro = 1 if args.micro == parser.get_default("micro") else args.micro
        print(f"device: {device}; long context: seq {args.seq} x micro {micro} vs seq 2048 at the same tokens per step; "
              f"median of steps 3..{args.steps}")
        with tempfile.TemporaryDirectory() as tmp:
            for shape in args.shapes.split(","):
                print(f"shape {shape} ({make_preset(shape).num_parameters(padded_tp=1) / 1e6:.1f}M parameters)")
                long_context_scaling(make_preset(shape), args.seq, micro, args.steps, Path(tmp))
        return
    print(f"device: {device}; batch {args.micro} x seq {args.seq}; median of steps 3..{args.steps}, best of {args.rounds} rounds")
    print(f"{'shape':<6} {'params':>8} {'megatron tok/s':>15} {'HF tok/s':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        step_time = None
        for shape in args.shapes.split(","):
            preset = make_preset(shape)
            ours = theirs = 0.0
            for _ in range(args.rounds):  # alternate the two sides; keep each side's best round
                ours = max(ours, megatron_tokens_per_s(preset, args.seq, args.micro, args.steps, Path(tmp)))
                theirs = max(theirs, hf_tokens_per_s(preset, args.seq, args.micro, args.steps))
            step_time = step_time or args.micro * args.seq / ours
            print(f"{shape:<6} {preset.num_parameters(padded_tp=1) / 1e6:>7.1f}M {ours:>15.0f} {theirs:>10.0f} {ours / theirs:>6.2f}")
        loader = loader_seconds_per_batch(args.seq, args.micro, Path(tmp))
        print(f"data loader: {1e3 * loader:.2f} ms per global batch = {100 * loader / step_time:.2f}% of a "
              f"{args.shapes.split(',')[0]} step ({1e3 * step_time:.0f} ms)")


if __name__ == "__main__":
    main()
