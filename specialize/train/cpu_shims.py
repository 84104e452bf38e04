"""Training-side CPU shims: megatron's schedules and optimizer allocate small bookkeeping tensors with
a literal ``device="cuda"`` (token counters, grad-norm buffers, found-inf flags), which no config flag
reaches. ``specialize.model.cpu_compat`` covers the model; this covers the loop.

We give exactly those megatron modules a ``torch`` whose tensor factories send ``"cuda"`` to the CPU;
everything else is the real torch. Applied only when CUDA is unavailable, once, and listed by
``applied()`` so tests can see it. Nothing changes on a GPU machine.
"""

from __future__ import annotations

import contextlib
import importlib
import types

import torch

_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.distributed.finalize_model_grads",
    "megatron.core.dist_checkpointing.strategies.fully_parallel",
    "megatron.core.dist_checkpointing.exchange_utils",
)
_FACTORIES = ("zeros", "ones", "empty", "tensor", "full", "arange", "zeros_like", "empty_like", "ones_like")
_APPLIED: list[str] = []


def _cpu_device(device):
    if device is None:
        return None
    text = str(device)
    return "cpu" if text.startswith("cuda") else device


def _wrap(factory):
    def cpu_factory(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return factory(*args, **kwargs)

    return cpu_factory


class _CpuTorch(types.ModuleType):
    """``torch`` as seen by one megatron module: factories never allocate on CUDA."""

    def __init__(self) -> None:
        super().__init__("torch")
        for name in _FACTORIES:
            setattr(self, name, _wrap(getattr(torch, name)))

    def __getattr__(self, name: str):
        return getattr(torch, name)


def applied() -> tuple[str, ...]:
    return tuple(_APPLIED)


def enable_training_cpu_shims() -> None:
    """Idempotent; no-op with CUDA. Call after ``specialize.model.cpu_compat.enable_cpu_compat``."""
    if torch.cuda.is_available() or _APPLIED:
        return
    proxy = _CpuTorch()
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "torch", None) is torch:
            module.torch = proxy
            _APPLIED.append(name)
    # Tensor.cuda() in the optimizer's state loading: the identity on a CPU-only machine.
    if not getattr(torch.Tensor.cuda, "_specialize_cpu", False):
        def _identity(self, *args, **kwargs):
            return self
        _identity._specialize_cpu = True
        torch.Tensor.cuda = _identity
        _APPLIED.append("torch.Tensor.cuda -> identity")


@contextlib.contextmanager
def cuda_type_names():
    """While building megatron's optimizers on CPU, ``tensor.type()`` answers with CUDA names.

    The (distributed) optimizer sorts parameters into fp32/bf16 groups by comparing ``param.type()``
    with ``'torch.cuda.FloatTensor'`` and raises otherwise; the checks run only at construction, so
    the rename is scoped to it. No-op with CUDA.
    """
    if torch.cuda.is_available():
        yield
        return
    original = torch.Tensor.type

    def type_with_cuda_name(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None and not kwargs:
            name = original(self)
            return name.replace("torch.", "torch.cuda.", 1) if not self.is_cuda and "cuda" not in name else name
        return original(self, dtype, non_blocking, **kwargs)

    torch.Tensor.type = type_with_cuda_name
    try:
        yield
    finally:
        torch.Tensor.type = original
