"""The CPU shims: each one does what megatron expected of CUDA, and a real training step runs."""

from __future__ import annotations

import pytest
import torch

from specialize.model import cpu_compat

pytestmark = pytest.mark.skipif(not cpu_compat.cpu_mode(), reason="the shims are a no-op with CUDA")


def test_cuda_literal_factories_allocate_on_cpu():
    cpu_compat.enable_cpu_compat()
    from megatron.core.pipeline_parallel import schedules
    from megatron.core.transformer import utils

    assert isinstance(schedules.torch, cpu_compat.CpuDeviceTorch)
    assert schedules.torch.zeros([], dtype=torch.int, device="cuda").device.type == "cpu"
    assert schedules.torch.tensor([1.0], device=torch.device("cuda", 0)).device.type == "cpu"
    assert schedules.torch.Tensor is torch.Tensor  # everything else is the real torch
    mask = utils.get_default_causal_mask(3)
    assert mask.device.type == "cpu"
    assert mask.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    assert torch.cuda.current_device() == torch.device("cpu")


def test_rng_tracker_forks_the_cpu_generator(megatron_single):
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    tracker = get_cuda_rng_tracker()
    outside_before = torch.get_rng_state()
    with tracker.fork():
        first = torch.rand(4)
    with tracker.fork():
        second = torch.rand(4)
    # The named stream advances across forks and the default stream is untouched.
    assert not torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), outside_before)


def test_parameter_type_reports_cuda_names():
    cpu_compat.enable_cpu_compat()
    assert torch.nn.Parameter(torch.zeros(2)).type() == "torch.cuda.FloatTensor"
    assert torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16)).type() == "torch.cuda.BFloat16Tensor"
    assert torch.zeros(2).type() == "torch.FloatTensor"  # plain tensors unchanged


def test_training_steps_with_ddp_adam_and_clipping(megatron_single):
    """megatron's schedule + DDP + optimizer (with grad clipping) train qwen-tiny on CPU."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.presets import get_preset

    preset = get_preset("qwen-tiny")
    config = transformer_config(preset)
    model = DistributedDataParallel(
        config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), build_gpt_model(preset, config)
    )
    optimizer = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=3e-3, clip_grad=1.0), [model])
    tokens = torch.randint(0, preset.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(16).unsqueeze(0).expand(2, -1)

    def forward_step(_data, chunk):
        loss = chunk(tokens[:, :-1], positions, None, labels=tokens[:, 1:])
        return loss, lambda out: (out.float().mean(), {"loss": out.float().mean().detach()})

    losses = []
    for _ in range(4):
        model.zero_grad_buffer()
        optimizer.zero_grad()
        result = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=None, model=[model], num_microbatches=1,
            seq_length=16, micro_batch_size=2, forward_only=False,
        )
        updated, grad_norm, _ = optimizer.step()
        assert updated and grad_norm > 0
        losses.append(result[0]["loss"].item())
    assert losses[-1] < losses[0] - 0.5  # memorising one batch


def test_triton_stand_in_serves_one_import_then_withdraws(tmp_path, monkeypatch):
    """megatron-core 0.19's paged_stash imports triton at module level; absent triton must not break it."""
    import importlib.util
    import sys

    if importlib.util.find_spec("triton") is not None:
        pytest.skip("triton is installed: the stand-in is never used")
    (tmp_path / "fake_paged_stash.py").write_text(
        "import triton\nimport triton.language as tl\n\n"
        "@triton.jit\ndef kernel(x, BLOCK: tl.constexpr):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cpu_compat, "PAGED_STASH_MODULE", "fake_paged_stash")
    applied_before = list(cpu_compat._APPLIED)
    try:
        cpu_compat._stub_triton_if_missing()
        assert sys.modules["fake_paged_stash"].kernel(3, 4) == 3
        assert "triton" not in sys.modules and "triton.language" not in sys.modules
    finally:
        cpu_compat._APPLIED[:] = applied_before
        sys.modules.pop("fake_paged_stash", None)
