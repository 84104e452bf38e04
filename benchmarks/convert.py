"""Conversion throughput and memory: a synthetic Qwen2-shaped checkpoint through both converters.

Writes a random bf16 checkpoint with the shape of a known preset (default qwen2.5-1.5b, ~1.5B
parameters, one ~3 GB shard like the released model), converts it HF -> megatron -> HF, checks
the round trip is bit-identical, and prints for each direction the wall time, GB/s (checkpoint
bytes / time) and peak RSS against the target: 1.5 x (largest safetensors shard + largest tensor).
Each step runs in a fresh process so its peak RSS is its own.

    python benchmarks/convert.py                      # ~1.5B, a few minutes on 2 cores
    python benchmarks/convert.py --size qwen2.5-0.5b  # quicker
    python benchmarks/convert.py --size qwen-tiny     # seconds (smoke check)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_synthetic(preset_name: str, directory: Path, max_shard_bytes: int) -> None:
    """A random bf16 Qwen2ForCausalLM checkpoint of the preset's shape, produced tensor by tensor."""
    import torch

    from specialize.convert.hf_io import TensorGroup, write_sharded_safetensors
    from specialize.convert.megatron_to_hf import hf_config
    from specialize.model.presets import get_preset
    from specialize.tokenization import load_tokenizer

    preset = get_preset(preset_name)
    preset.family = "qwen2"
    generator = torch.Generator().manual_seed(0)
    groups = [
        TensorGroup(names=[name], shapes=[shape], dtype=torch.bfloat16,
                    produce=lambda shape=shape: [(torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)])
        for name, shape in preset.spec.table.hf_shapes(preset).items()
    ]
    write_sharded_safetensors(directory, groups, max_shard_bytes)
    tokenizer = load_tokenizer(None)
    config = hf_config(preset, torch.bfloat16, bos_id=tokenizer.eod_id, eos_id=tokenizer.eod_id)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_hf(directory)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process and its finished children (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def run_step(step: str, *args: str) -> dict:
    """Run one step in a fresh interpreter; it prints a JSON line with its time and peak RSS."""
    output = subprocess.run(
        [sys.executable, "-W", "ignore", __file__, "--step", step, *args],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def step_main(step: str, args: list[str]) -> None:
    start = time.perf_counter()
    if step == "write":
        write_synthetic(args[0], Path(args[1]), int(args[2]))
    elif step == "import":
        from specialize.convert import hf_to_megatron

        hf_to_megatron(args[0], args[1])
    elif step == "export":
        from specialize.convert import megatron_to_hf

        megatron_to_hf(args[0], args[1], max_shard_bytes=int(args[2]))
    elif step == "baseline":  # what the libraries alone take: torch, megatron-core, transformer layers
        from specialize.model.cpu_compat import enable_cpu_compat

        enable_cpu_compat()
        import megatron.core.models.gpt  # noqa: F401
    elif step == "compare":
        import torch

        from specialize.convert.hf_io import HFWeights

        a, b = HFWeights(args[0]), HFWeights(args[1])
        if a.names() != b.names() or any(not torch.equal(a.get(n), b.get(n)) for n in sorted(a.names())):
            raise SystemExit("round trip is NOT bit-identical")
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss": peak_rss_bytes()}))


def directory_bytes(directory: Path, pattern: str) -> int:
    return sum(path.stat().st_size for path in directory.rglob(pattern) if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="qwen2.5-1.5b", help="preset whose shape to use (default qwen2.5-1.5b)")
    parser.add_argument("--max-shard-gb", type=float, default=4.0, help="shard size of the synthetic and exported checkpoints")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args()
    if known.step:
        step_main(known.step, rest)
        return

    from specialize.convert.hf_io import HFWeights
    from specialize.model.presets import get_preset

    shard_bytes = str(int(known.max_shard_gb * 1024**3))
    with tempfile.TemporaryDirectory(dir=known.workdir) as tmp:
        work = Path(tmp)
        hf, megatron, exported = work / "hf", work / "megatron", work / "exported"
        wrote = run_step("write", known.size, str(hf), shard_bytes)
        size = directory_bytes(hf, "*.safetensors")
        weights = HFWeights(hf)
        largest_shard = max(path.stat().st_size for path in hf.glob("*.safetensors"))
        largest_tensor = max(
            2 * int(__import__("math").prod(shape)) for shape in get_preset(known.size).spec.table.hf_shapes(get_preset(known.size)).values()
        )
        del weights
        target = 1.5 * (largest_shard + largest_tensor)
        baseline = run_step("baseline")["peak_rss"]
        params = get_preset(known.size).num_parameters()
        print(f"synthetic {known.size}: {params / 1e9:.2f} B parameters, {size / 1e9:.2f} GB bf16, "
              f"largest shard {largest_shard / 1e9:.2f} GB, largest tensor {largest_tensor / 1e9:.2f} GB "
              f"(written in {wrote['seconds']:.1f} s)")
        print(f"peak RSS target: 1.5 x (largest shard + largest tensor) = {target / 1e9:.2f} GB "
              f"(above the {baseline / 1e9:.2f} GB that importing torch + megatron-core takes)")
        for label, step, args in (
            ("hf -> megatron", "import", (str(hf), str(megatron))),
            ("megatron -> hf", "export", (str(megatron), str(exported), shard_bytes)),
        ):
            result = run_step(step, *args)
            above = result["peak_rss"] - baseline
            verdict = "within" if above <= target else "OVER"
            print(f"{label}: {result['seconds']:.1f} s, {size / result['seconds'] / 1e9:.3f} GB/s, "
                  f"peak RSS {result['peak_rss'] / 1e9:.2f} GB, {above / 1e9:.2f} GB above baseline ({verdict} target)")
        run_step("compare", str(hf), str(exported))
        print("round trip: bit-identical")


if __name__ == "__main__":
    main()
