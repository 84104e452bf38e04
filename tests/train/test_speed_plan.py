"""Megatron-LM's GPU speed settings: on by default on GPU, off on CPU, each switchable, refused when the
kernel it needs is missing; and the prefetching data path gives exactly the batches of the plain one."""

from __future__ import annotations

import json

import pytest

from specialize.train.speed import SpeedConfig, SpeedSettingUnavailable, plan_speed

FLAGS = ("overlap_grad_reduce", "overlap_param_gather", "gradient_accumulation_fusion", "rope_fusion", "cross_entropy_fusion", "prefetch")


def _plan(config=None, **environment):
    settings = dict(on_gpu=True, have_te=True, have_fused_wgrad=True, distributed_optimizer=True, environment={})
    settings.update(environment)
    return plan_speed(config or SpeedConfig(), **settings)


def test_all_on_for_a_full_gpu_stack_and_off_on_cpu():
    gpu = _plan()
    assert all(getattr(gpu, flag) for flag in FLAGS) and gpu.cuda_device_max_connections == 1
    assert gpu.transformer_overrides() == {"gradient_accumulation_fusion": True, "apply_rope_fusion": True,
                                           "cross_entropy_loss_fusion": True, "cross_entropy_fusion_impl": "native"}
    cpu = _plan(on_gpu=False, have_te=False, have_fused_wgrad=False)
    assert not any(getattr(cpu, flag) for flag in FLAGS) and cpu.cuda_device_max_connections is None


def test_auto_follows_what_the_machine_has():
    plan = _plan(have_te=False, have_fused_wgrad=False, distributed_optimizer=False)
    assert (plan.rope_fusion, plan.gradient_accumulation_fusion, plan.overlap_param_gather) == (False, False, False)
    assert plan.overlap_grad_reduce and plan.cross_entropy_fusion and plan.prefetch
    assert _plan(environment={"CUDA_DEVICE_MAX_CONNECTIONS": "8"}).cuda_device_max_connections is None  # the user's value stays


def test_each_setting_can_be_switched():
    plan = _plan(SpeedConfig(overlap_grad_reduce=False, prefetch=False, cuda_device_max_connections=4))
    assert not plan.overlap_grad_reduce and not plan.prefetch and plan.cuda_device_max_connections == 4
    cpu = _plan(SpeedConfig(overlap_grad_reduce=True, prefetch=True), on_gpu=False, have_te=False, have_fused_wgrad=False)
    assert cpu.overlap_grad_reduce and cpu.prefetch  # communication overlap and prefetching work on CPU too


@pytest.mark.parametrize("config, environment, message", [
    (SpeedConfig(rope_fusion=True), {"have_te": False}, "rope_fusion=true needs Transformer Engine"),
    (SpeedConfig(gradient_accumulation_fusion=True), {"have_fused_wgrad": False}, "fused_weight_gradient_mlp_cuda"),
    (SpeedConfig(overlap_param_gather=True), {"distributed_optimizer": False}, "optimizer.distributed=true"),
    (SpeedConfig(cross_entropy_fusion=True), {"on_gpu": False}, "needs a GPU"),
])
def test_a_setting_whose_kernel_is_missing_is_an_error(config, environment, message):
    with pytest.raises(SpeedSettingUnavailable, match=message):
        _plan(config, **environment)


def test_prefetched_training_is_bitwise_the_plain_run(tmp_path):
    from specialize.train import runtime
    from tests.train.test_train_runtime import PatternProvider, _config

    runs = {}
    for name, extra in (("plain", ()), ("prefetch", ("speed.prefetch=true", "speed.overlap_grad_reduce=true"))):
        runtime.run_training(_config(tmp_path / name, 6, "log.eval_every=3", *extra), PatternProvider(segments=True))
        records = [json.loads(line) for line in (tmp_path / name / "run" / "metrics.jsonl").read_text().splitlines()]
        runs[name] = [(r["kind"], r["step"], r["loss"], r.get("grad_norm")) for r in records]
    assert runs["prefetch"] == runs["plain"] and len(runs["plain"]) == 6 + 3
