"""TP=2 and PP=2 on CPU with 2 gloo processes: imported Qwen2 and Qwen3 logits equal transformers', resharding keeps them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from model_testing import TINY, hf_logits, sample_tokens

from specialize.convert import hf_to_megatron

pytest.importorskip("transformers")


def _logits_tp(checkpoint: Path, tokens: torch.Tensor, tp: int) -> torch.Tensor:
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import load_model_checkpoint
    from specialize.model.parallel import initialize_parallel
    from specialize.model.source import model_preset

    initialize_parallel(tp=tp, pp=1)
    preset = model_preset(checkpoint)
    model = build_gpt_model(preset, transformer_config(preset, tp=tp), parallel_output=False).eval()
    load_model_checkpoint(model, checkpoint)
    positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    with torch.no_grad():
        return model(tokens, positions, None)


def _logits_pp(checkpoint: Path, tokens: torch.Tensor, pp: int) -> torch.Tensor | None:
    """Forward through megatron's pipeline schedule (p2p over gloo); logits on the last stage."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import load_model_checkpoint
    from specialize.model.parallel import initialize_parallel
    from specialize.model.source import model_preset

    initialize_parallel(tp=1, pp=pp)
    preset = model_preset(checkpoint)
    model = build_gpt_model(preset, transformer_config(preset, pp=pp), parallel_output=False).eval()
    load_model_checkpoint(model, checkpoint)
    positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    collected = []

    def forward_step(_data, chunk):
        output = chunk(tokens, positions, None)

        def keep(logits):
            collected.append(logits.detach().clone())
            return logits.sum() * 0, {}

        return output, keep

    with torch.no_grad():
        get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=None, model=[model], num_microbatches=1,
            seq_length=tokens.shape[1], micro_batch_size=tokens.shape[0], forward_only=True,
        )
    return collected[0] if parallel_state.is_pipeline_last_stage() else None


def _worker(rank: int, port: int, hf_dir: str, tp1_checkpoint: str, out: str) -> None:
    from specialize.model.parallel import destroy_parallel, initialize_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    out_dir = Path(out)
    tokens = sample_tokens()
    initialize_parallel(tp=2, pp=1)
    # Import straight into a TP=2 layout (each rank fills its half) ...
    hf_to_megatron(hf_dir, out_dir / "tp2", tp=2, pp=1, collective=True)
    results = {"tp2": _logits_tp(out_dir / "tp2", tokens, tp=2),
               # ... and load the TP=1 checkpoint at TP=2 (resharding, vocab padding 8576 -> 8704).
               "tp1_as_tp2": _logits_tp(Path(tp1_checkpoint), tokens, tp=2)}
    # The TP=2 checkpoint at PP=2: one layer per stage, activations sent over gloo p2p.
    results["pp2"] = _logits_pp(out_dir / "tp2", tokens, pp=2)
    if rank == 1:  # the last pipeline stage holds the PP logits; TP logits are gathered on every rank
        torch.save(results, out_dir / "logits.pt")
    destroy_parallel()


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["hf_untied", "hf_qwen3_tied"])  # Qwen2 untied; Qwen3 (q/k norms, head_dim 32) tied
def test_tp2_and_pp2_logits_match_transformers(fixture, request, tmp_path):
    import torch.multiprocessing as mp

    from specialize.model.parallel import free_port

    hf_dir, hf_model = request.getfixturevalue(fixture)
    hf_to_megatron(hf_dir, tmp_path / "tp1")
    mp.spawn(_worker, args=(free_port(), str(hf_dir), str(tmp_path / "tp1"), str(tmp_path)), nprocs=2)
    results = torch.load(tmp_path / "logits.pt", weights_only=True)
    expected = hf_logits(hf_model, sample_tokens())
    vocab = TINY["vocab_size"]
    for layout in ("tp2", "tp1_as_tp2", "pp2"):
        logits = results[layout]
        assert logits.shape[-1] in (8576, 8704), layout
        assert (logits[..., :vocab] - expected).abs().max().item() <= 1e-4, layout
        assert torch.all(logits[..., vocab:] == 0), layout
    # The TP=2 checkpoint exports (one tensor at a time, no model, no process group) to the same weights.
    from safetensors.torch import load_file

    from specialize.convert import megatron_to_hf
    from specialize.convert.checkpoint_reader import CheckpointTensors

    loaded: list[tuple[str, int]] = []
    real_get = CheckpointTensors.get

    def recording_get(self, name):
        tensor = real_get(self, name)
        loaded.append((name, tensor.numel()))
        return tensor

    CheckpointTensors.get = recording_get
    try:
        megatron_to_hf(tmp_path / "tp2", tmp_path / "exported")
    finally:
        CheckpointTensors.get = real_get
    assert not torch.distributed.is_initialized()
    largest_parameter = max(p.numel() for p in hf_model.parameters())
    assert loaded and max(numel for _, numel in loaded) <= 8704 * TINY["hidden_size"]  # never more than one (padded) tensor
    assert largest_parameter <= 8704 * TINY["hidden_size"]
    original = {k: v for f in hf_dir.glob("*.safetensors") for k, v in load_file(f).items()}
    exported = {k: v for f in (tmp_path / "exported").glob("*.safetensors") for k, v in load_file(f).items()}
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in original)
