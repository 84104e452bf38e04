"""The GPU check: one script, one GPU, under 8 minutes, printing what our CPU tests cannot show.

    PYTHONPATH=. python benchmarks/gpu_check.py [--out DIR]        # on one H100/H200 (bf16, Transformer Engine)
    PYTHONPATH=. python benchmarks/gpu_check.py --smoke            # the same checks at qwen-tiny on CPU (fp32)

1. throughput: ``run_training`` (megatron DDP, distributed optimizer, the speed settings) at the
   Qwen2.5-1.5B shape, seq 4096, bf16: tokens/s and MFU with ``step_flops`` (target MFU >= 45%);
2. packed-sample isolation through the run's attention plan (TE: THD ``cu_seqlens``): a conversation's
   logits are unchanged (bf16 tolerance) when another is packed before it, and change without boundaries;
3. ``flash``, ``auto`` and ``local`` give the same loss on one batch (bf16 tolerance);
4. a model checkpoint saved on the GPU loads back to the same logits;
5. the Hugging Face export of that checkpoint gives the model's logits in ``transformers``.

Each check prints PASS/FAIL/SKIP with its figures; the exit code is the number of failures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

RESULTS: list[tuple[str, str, str]] = []


def report(name: str, status: str, detail: str) -> None:
    RESULTS.append((name, status, detail))
    print(f"[{status}] {name}: {detail}", flush=True)


class RandomProvider:
    """Random token windows; with ``segments`` each row holds two documents (like packed SFT)."""

    def __init__(self, vocab: int, segments: bool = False) -> None:
        self.vocab, self.segments = vocab, segments

    def build(self, request):
        from specialize.train.data_api import DataSplits

        outer = self

        class Samples:
            def __init__(self, count: int, seed: int) -> None:
                self.count, self.seed = count, seed

            def __len__(self) -> int:
                return self.count

            def __getitem__(self, i):
                rng = np.random.default_rng(self.seed * 1_000_003 + i)
                seq = request.seq_length
                window = rng.integers(0, outer.vocab, seq + 1).astype(np.int64)
                segments = np.zeros(seq, np.int32)
                if outer.segments:
                    segments[seq // 2:] = 1
                return {"tokens": window[:-1], "labels": window[1:], "loss_mask": np.ones(seq, np.float32),
                        "position_ids": np.arange(seq, dtype=np.int64), "segment_ids": segments}

        return DataSplits(Samples(request.train_samples, 1), Samples(max(request.valid_samples, 1), 2), {"random": True})


def check_throughput(args, out: Path) -> None:
    from specialize.train import runtime
    from specialize.train.config import RunConfig, apply_override

    config = RunConfig()
    for assignment in (f"output={out / 'throughput'}", f"model.source={args.preset}", f"train.steps={args.steps}",
                       f"train.seq_length={args.seq}", "train.micro_batch_size=1", f"train.global_batch_size={args.batch}",
                       "log.eval_every=0", "log.tensorboard=false", "log.progress=plain", "checkpoint.save_every=100000",
                       "optimizer.warmup_steps=1", f"train.precision={args.precision}"):
        apply_override(config, assignment)
    runtime.run_training(config, RandomProvider(args.vocab))
    records = [json.loads(line) for line in (out / "throughput" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"][2:]  # after warm-up
    tokens = statistics.median(r["tokens_per_s"] for r in train)
    mfu = [r["mfu"] for r in train if r.get("mfu") is not None]
    detail = f"{args.preset} seq {args.seq} batch {args.batch}: {tokens:,.0f} tokens/s"
    if mfu:
        value = statistics.median(mfu)
        detail += f", MFU {100 * value:.1f}% (target >= 45%)"
        report("throughput", "PASS" if value >= 0.45 or args.smoke else "FAIL", detail)
    else:
        report("throughput", "PASS" if args.smoke else "FAIL", detail + ", MFU unknown (no peak for this device)")


def _model(preset, precision: str, choice: str):
    from specialize.model.build import _have_transformer_engine, build_gpt_model, transformer_config
    from specialize.train.attention import plan_attention

    plan = plan_attention(choice, on_gpu=torch.cuda.is_available(), have_te=_have_transformer_engine())
    bf16 = precision == "bf16"
    config = transformer_config(preset, bf16=bf16, params_dtype=torch.bfloat16 if bf16 else torch.float32,
                                **plan.config_overrides())
    torch.manual_seed(0)
    model = build_gpt_model(preset, config, parallel_output=False, local_spec=plan.spec == "local")
    return model.eval(), plan


def _logits(model, plan, tokens: torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor:
    from specialize.train.attention import thd_batch
    from specialize.train.batches import block_causal_mask

    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)
    with torch.no_grad():
        if segments is None:
            return model(tokens, positions, None).float()
        if plan.boundaries == "thd":
            flat, _, _, flat_positions, packed = thd_batch(tokens, tokens, torch.ones_like(tokens), positions, segments)
            return model(flat, flat_positions, None, packed_seq_params=packed).float()
        return model(tokens, positions, block_causal_mask(segments)).float()


def check_isolation(args, preset, device) -> None:
    model, plan = _model(preset, args.precision, "auto")
    rng = torch.Generator().manual_seed(3)
    first = torch.randint(0, args.vocab, (1, args.seq // 2), generator=rng)
    second = torch.randint(0, args.vocab, (1, args.seq // 2), generator=rng)
    alone = _logits(model, plan, second.to(device), None)[0]
    packed_tokens = torch.cat([first, second], dim=1).to(device)
    segments = torch.cat([torch.zeros_like(first), torch.ones_like(second)], dim=1).to(torch.int32).to(device)
    packed = _logits(model, plan, packed_tokens, segments)[0, args.seq // 2:]
    leaked = _logits(model, plan, packed_tokens, None)[0, args.seq // 2:]
    scale = alone.abs().max().item()
    kept = (packed - alone).abs().max().item() / scale
    moved = (leaked - alone).abs().max().item() / scale
    tolerance = 2e-2 if args.precision == "bf16" else 1e-4
    report("packed isolation", "PASS" if kept <= tolerance and moved > 10 * tolerance else "FAIL",
           f"{plan.spec}/{plan.boundaries}: max rel diff with boundaries {kept:.2e} (<= {tolerance}), without {moved:.2e}")


def check_backends_agree(args, preset, device) -> None:
    from specialize.train.attention import AttentionUnavailable

    rng = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, args.vocab, (1, args.seq), generator=rng).to(device)
    losses = {}
    for choice in ("auto", "flash", "local"):
        try:
            model, plan = _model(preset, args.precision, choice)
        except AttentionUnavailable as err:
            losses[choice] = f"unavailable ({err})"
            continue
        logits = _logits(model, plan, tokens, None)[0, :-1, : args.vocab]
        losses[choice] = float(torch.nn.functional.cross_entropy(logits, tokens[0, 1:]))
    numbers = [v for v in losses.values() if isinstance(v, float)]
    spread = (max(numbers) - min(numbers)) / max(numbers) if numbers else float("nan")
    tolerance = 1e-2 if args.precision == "bf16" else 1e-5
    status = "SKIP" if len(numbers) < 2 else "PASS" if spread <= tolerance else "FAIL"
    report("attention backends agree", status, f"{losses}; relative spread {spread:.2e} (<= {tolerance})")


def check_checkpoint_and_export(args, preset, device, out: Path) -> None:
    import transformers

    from specialize.convert import megatron_to_hf
    from specialize.model.checkpoint import load_model_checkpoint, save_model_checkpoint

    model, plan = _model(preset, args.precision, "auto")
    tokens = torch.randint(0, args.vocab, (1, min(args.seq, 512)), generator=torch.Generator().manual_seed(5)).to(device)
    expected = _logits(model, plan, tokens, None)[0, :, : args.vocab]
    directory = out / "checkpoint"
    started = time.perf_counter()
    save_model_checkpoint(model, directory, preset, preset.tokenizer)
    saved = time.perf_counter() - started
    fresh, _ = _model(preset, args.precision, "auto")
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    started = time.perf_counter()
    load_model_checkpoint(fresh, directory)
    loaded = time.perf_counter() - started
    again = _logits(fresh, plan, tokens, None)[0, :, : args.vocab]
    same = torch.equal(again, expected)
    report("checkpoint round trip", "PASS" if same else "FAIL", f"save {saved:.1f} s, load {loaded:.1f} s, logits bitwise equal: {same}")

    from specialize.model.parallel import destroy_parallel, initialize_parallel

    destroy_parallel()  # the export sets up its own one-process group
    hf = megatron_to_hf(directory, out / "hf")
    initialize_parallel(1, 1)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    theirs = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=dtype).to(device).eval()
    with torch.no_grad():
        exported = theirs(tokens).logits[0].float()
    diff = (exported - expected).abs().max().item() / expected.abs().max().item()
    tolerance = 3e-2 if args.precision == "bf16" else 1e-4
    report("HF export logits", "PASS" if diff <= tolerance else "FAIL", f"max rel diff {diff:.2e} (<= {tolerance}) vs the megatron model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="qwen-tiny, fp32, seq 128: exercise the script on a CPU")
    parser.add_argument("--preset", default="qwen2.5-1.5b")
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8, help="global batch (micro-batch 1)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.seq, args.batch, args.steps = "qwen-tiny", 128, 4, 4
    args.precision = "bf16" if torch.cuda.is_available() and not args.smoke else "fp32"

    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.model.presets import get_preset

    preset = get_preset(args.preset)
    args.vocab = preset.vocab_size
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    print(f"gpu_check: torch {torch.__version__}, device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, "
          f"preset {args.preset}, seq {args.seq}, {args.precision}", flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        check_throughput(args, out)
    except Exception:
        report("throughput", "FAIL", traceback.format_exc(limit=3))
    initialize_parallel(1, 1)
    try:
        for check in (check_isolation, check_backends_agree):
            try:
                check(args, preset, device)
            except Exception:
                report(check.__name__, "FAIL", traceback.format_exc(limit=3))
        try:
            check_checkpoint_and_export(args, preset, device, out)
        except Exception:
            report("checkpoint and export", "FAIL", traceback.format_exc(limit=3))
    finally:
        destroy_parallel()
    failures = sum(status == "FAIL" for _, status, _ in RESULTS)
    print(f"\ngpu_check: {len(RESULTS)} checks, {failures} failed, {time.perf_counter() - started:.0f} s; outputs in {out}")
    (out / "gpu_check.json").write_text(json.dumps([{"check": n, "status": s, "detail": d} for n, s, d in RESULTS], indent=1))
    return failures


if __name__ == "__main__":
    sys.exit(main())
