"""Run megatron-core on CPU (gloo) for tests and laptop demos: the few CUDA assumptions, shimmed.

megatron-core is GPU-first. Model construction and the forward pass run on CPU once
``TransformerConfig(use_cpu_initialization=True)`` and the fusion flags are off (see
``specialize.model.build``), except for these assumptions, which no config flag reaches
(found on megatron-core 0.16.1 and, per the issue, 0.19.2; torch 2.13 CPU):

1. ``torch.cuda.current_device()`` is the allocation device of RoPE frequencies, TP gather buffers,
   p2p shape buffers and dist-ckpt flags. On a CPU-only build it raises. We make it answer
   ``torch.device("cpu")`` so those tensors land on the CPU.
2. The CUDA RNG tracker (``tensor_parallel.random``): model-parallel seeding and every
   ``get_cuda_rng_tracker().fork()`` (DotProductAttention, TP weight init) read and write CUDA
   generator state. We install a tracker with the same semantics over the CPU generator.
3. Literal ``device="cuda"`` in small bookkeeping allocations: the default causal mask, the
   schedules' token counter, the optimizer's found-inf/scale tensors, grad clipping, DDP buffer
   warm-up, dist-ckpt flags. In exactly those modules (``CUDA_LITERAL_MODULES``) the global name
   ``torch`` is rebound to a view of torch whose tensor factories allocate on CPU when asked for CUDA.
4. ``torch.cuda.synchronize()`` and stream/event calls in p2p, DDP and the schedules: without CUDA
   there is nothing to synchronize, so ``synchronize`` becomes a no-op (``batch_p2p_sync=False`` in the
   config avoids the p2p one already), and ``current_stream``/``Stream``/``Event``/``stream()`` become
   objects whose waits return at once (megatron-core 0.19's DDP calls ``current_stream()`` in every
   gradient sync: "Found no NVIDIA driver" on the CUDA build of torch).
5. ``param.type() == 'torch.cuda.FloatTensor'`` dispatch in the Float16/distributed optimizers and an
   assert of it in grad clipping: on CPU ``Parameter.type()`` reports the CUDA type name, and the
   clipping function is replaced by an equivalent without the assert.
6. ``Tensor.cuda()`` when the optimizer loads its state from a checkpoint: the identity (the
   tensor is already where it can be). While optimizers are built, ``cuda_type_names()`` also lets
   plain tensors (the distributed optimizer's main-parameter copies) report CUDA type names.
7. megatron-core 0.19 imports ``triton`` unconditionally in ``transformer/moe/ops/paged_stash.py``
   (reached from the GPT layer specs). If triton is missing, that one module is imported against a
   stand-in whose kernels raise if launched, and the stand-in is withdrawn from ``sys.modules``
   right after (torch and others still see triton as absent). On 0.16.1 the module does not exist
   and the step is skipped; the Python 3.12 / megatron-core 0.19 leg of ``.ci/run`` exercises it.

Everything else megatron needs on CPU is a config flag, set where the config is made. Every patch
is applied once, only when ``torch.cuda.is_available()`` is False, and is listed in
``applied_patches()`` so tests can check them. ``dist_checkpointing`` additionally needs ``psutil``
(a dependency) and a ``if __name__ == "__main__":`` guard in scripts, because it may spawn processes.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types

import torch

_APPLIED: list[str] = []
_CPU = torch.device("cpu")


def applied_patches() -> tuple[str, ...]:
    """Names of the shims in effect in this process (empty with CUDA)."""
    return tuple(_APPLIED)


def cpu_mode() -> bool:
    """True when megatron must run on CPU (no usable CUDA device)."""
    return not torch.cuda.is_available()


def enable_cpu_compat() -> None:
    """Apply the CPU shims (idempotent). Does nothing when CUDA is available.

    Call it before importing megatron model code (``initialize_parallel`` does).
    """
    if not cpu_mode() or _APPLIED:
        return
    _stub_triton_if_missing()
    _patch_current_device()
    _patch_synchronize()
    _patch_streams()
    _patch_rng_tracker()
    _patch_cuda_literals()
    _patch_type_dispatch()
    _patch_tensor_cuda()


# -- 1. allocation device --------------------------------------------------------------------------

def _cpu_current_device() -> torch.device:
    return _CPU


def _patch_current_device() -> None:
    torch.cuda.current_device = _cpu_current_device
    _APPLIED.append("torch.cuda.current_device -> cpu")


# -- 4. synchronize ---------------------------------------------------------------------------------

def _patch_synchronize() -> None:
    torch.cuda.synchronize = lambda device=None: None
    _APPLIED.append("torch.cuda.synchronize -> no-op")


class _NullEvent:
    """A CUDA event where work is synchronous: already complete."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def record(self, stream=None) -> None:
        pass

    def wait(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end_event) -> float:
        return 0.0


class _NullStream(_NullEvent):
    """A CUDA stream where work is synchronous: waiting on anything is immediate.

    megatron-core 0.19's DDP reads ``torch.cuda.current_stream()`` in every ``start_grad_sync`` (to
    wait for CUDA-graph gradient events) and ``finish_grad_sync`` (to wait for its communication
    stream); with CPU tensors all of that work is already done when the call returns.
    """

    def wait_event(self, event) -> None:
        pass

    def wait_stream(self, stream) -> None:
        pass

    def record_event(self, event=None):
        return event or _NullEvent()


def _patch_streams() -> None:
    torch.cuda.current_stream = lambda device=None: _NullStream()
    torch.cuda.default_stream = lambda device=None: _NullStream()
    torch.cuda.Stream = _NullStream
    torch.cuda.Event = _NullEvent
    torch.cuda.stream = lambda stream=None: contextlib.nullcontext()
    _APPLIED.append("torch.cuda streams and events -> synchronous no-ops")


# -- 2. RNG tracker ---------------------------------------------------------------------------------

def _patch_rng_tracker() -> None:
    from megatron.core.tensor_parallel import random as mpu_random

    base = mpu_random.CudaRNGStatesTracker

    class CpuRNGStatesTracker(base):  # type: ignore[misc, valid-type]
        """megatron's tracker over the CPU default generator: named states, forked in and out.

        ``fork(name)`` swaps the named state into the CPU generator for the duration of the
        block and stores the advanced state back, exactly as the CUDA tracker does with the
        CUDA generator; so dropout/initialisation inside a fork draw from the named stream.
        """

        def add(self, name: str, seed: int) -> None:
            self._is_initialized = True
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            self.seeds_.add(seed)
            if name in self.states_:
                raise Exception(f"rng state {name} already exists")
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
            self.states_[name] = generator.get_state()

        @contextlib.contextmanager
        def fork(self, name: str = mpu_random._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"rng state {name} is not added")
            outer = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(outer)

    # initialize_rng_tracker() instantiates the module-level name, so new trackers are CPU ones;
    # the get/set helpers serve checkpoint code that saves "cuda" RNG state alongside the CPU one.
    mpu_random.CudaRNGStatesTracker = CpuRNGStatesTracker
    mpu_random._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mpu_random._set_cuda_rng_state = lambda new_state, *args, **kwargs: torch.set_rng_state(new_state)
    mpu_random.initialize_rng_tracker(force_reset=True)
    _APPLIED.append("megatron RNG tracker -> CPU generator")


# -- 3. literal device="cuda" ----------------------------------------------------------------------

#: megatron modules that allocate small bookkeeping tensors with a literal ``device="cuda"``: the
#: default causal mask, the schedules' token counters, the optimizer's found-inf/scale tensors, grad
#: clipping, the DDP buffer warm-up and dist-ckpt's save/exchange flags.
CUDA_LITERAL_MODULES = (
    "megatron.core.utils",  # local_multi_tensor_l2_norm (grad norm without apex)
    "megatron.core.transformer.utils",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.distributed.finalize_model_grads",
    "megatron.core.dist_checkpointing.strategies.fully_parallel",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.dist_checkpointing.exchange_utils",
)

_FACTORIES = (
    "arange", "as_tensor", "empty", "empty_like", "full", "full_like", "ones", "ones_like",
    "rand", "randint", "randn", "tensor", "zeros", "zeros_like",
)


def _is_cuda(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True  # a bare index means a CUDA device
    return torch.device(device).type == "cuda"


def _on_cpu(factory):
    def allocate(*args, **kwargs):
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = _CPU
            kwargs.pop("pin_memory", None)
        return factory(*args, **kwargs)

    allocate.__name__ = getattr(factory, "__name__", "factory")
    return allocate


class CpuDeviceTorch(types.ModuleType):
    """``torch`` as one megatron module sees it: tensor factories asked for CUDA allocate on CPU.

    Bound as the module's global ``torch``, so only that module's literal ``device="cuda"`` calls
    change; every other attribute is the real torch (``torch.Tensor``, ``torch.distributed``...).
    """

    def __init__(self) -> None:
        super().__init__("torch")
        for name in _FACTORIES:
            setattr(self, name, _on_cpu(getattr(torch, name)))

    def __getattr__(self, attribute: str):
        return getattr(torch, attribute)


def _patch_cuda_literals() -> None:
    proxy = CpuDeviceTorch()
    for module_name in CUDA_LITERAL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # moved or removed in this megatron-core version: nothing to patch
            continue
        if getattr(module, "torch", None) is torch:
            module.torch = proxy
            _APPLIED.append(f"{module_name}: device='cuda' factories -> cpu")


# -- 5. CUDA type-string dispatch -------------------------------------------------------------------

_TENSOR_TYPE = torch.Tensor.type


def _cuda_type_name(self, dtype=None, non_blocking=False, **kwargs):
    """``tensor.type()`` of a CPU tensor under its CUDA name ('torch.cuda.FloatTensor'); conversions untouched."""
    if dtype is None and not kwargs and self.device.type == "cpu":
        return _TENSOR_TYPE(self).replace("torch.", "torch.cuda.", 1)
    return _TENSOR_TYPE(self, dtype, non_blocking, **kwargs)


def _clip_grad_by_total_norm_fp32(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """megatron's ``clip_grad_by_total_norm_fp32`` without its CUDA type assert: scale grads in place."""
    from megatron.core.utils import to_local_if_dtensor

    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attribute = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [
        to_local_if_dtensor(getattr(p, attribute)).detach()
        for p in parameters
        if getattr(p, attribute, None) is not None
    ]
    for grad in grads:
        if grad.dtype not in (torch.float32, torch.bfloat16):
            raise TypeError(f"gradient clipping expects fp32/bf16 grads, got {grad.dtype}")
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        torch._foreach_mul_(grads, clip_coeff)


def _patch_type_dispatch() -> None:
    """megatron sorts parameters by ``param.type()`` strings ('torch.cuda.FloatTensor', ...) in the
    mixed-precision and distributed optimizers and asserts one in grad clipping. On CPU, parameters
    report the CUDA names (only ``Parameter.type()`` without arguments; conversions are untouched)
    and clipping uses a copy of megatron's function without the assert."""
    from megatron.core.optimizer import clip_grads
    from megatron.core.optimizer import optimizer as megatron_optimizer

    torch.nn.Parameter.type = _cuda_type_name
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    megatron_optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    _APPLIED.append("Parameter.type() -> CUDA type names; clip_grad_by_total_norm_fp32 without CUDA assert")


# -- 6. Tensor.cuda() and optimizer construction ------------------------------------------------------

def _tensor_already_here(self, *args, **kwargs):
    return self


def _patch_tensor_cuda() -> None:
    torch.Tensor.cuda = _tensor_already_here
    _APPLIED.append("Tensor.cuda() -> identity")


@contextlib.contextmanager
def cuda_type_names():
    """While building megatron's optimizers on CPU, every tensor's ``type()`` answers with CUDA names.

    The (distributed) optimizer sorts parameters into fp32/bf16 groups by comparing ``tensor.type()``
    with ``'torch.cuda.FloatTensor'`` and raises otherwise, also for plain tensors that are not
    ``Parameter``s; those checks run only at construction, so this rename is scoped to it. No-op
    with CUDA.
    """
    if not cpu_mode():
        yield
        return
    torch.Tensor.type = _cuda_type_name
    try:
        yield
    finally:
        torch.Tensor.type = _TENSOR_TYPE


# -- 7. triton ----------------------------------------------------------------------------------------

PAGED_STASH_MODULE = "megatron.core.transformer.moe.ops.paged_stash"


def _stub_triton_if_missing() -> None:
    """Import 0.19's ``paged_stash`` against a stand-in ``triton``, then withdraw the stand-in.

    Only that one module sees the stand-in: it is removed from ``sys.modules`` afterwards, so torch
    and other libraries that probe for triton still find it missing.
    """
    if importlib.util.find_spec("triton") is not None:
        return
    try:
        if importlib.util.find_spec(PAGED_STASH_MODULE) is None:
            return  # megatron-core < 0.19: nothing imports triton unconditionally
    except ModuleNotFoundError:
        return
    stand_ins = {name: _TritonStandIn(name) for name in ("triton", "triton.language")}
    stand_ins["triton"].language = stand_ins["triton.language"]
    sys.modules.update(stand_ins)
    try:
        importlib.import_module(PAGED_STASH_MODULE)
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    _APPLIED.append(f"{PAGED_STASH_MODULE} imported against a triton stand-in")


class _TritonStandIn(types.ModuleType):
    """Enough of ``triton`` for module-level decorators and annotations; any real use raises."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
        self.__path__ = []

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _unavailable_callable(f"{self.__name__}.{attribute}")


def _unavailable_callable(name: str):
    def stand_in(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # a bare decorator (@triton.jit): the kernel is never launched on CPU
        if not args:
            return lambda function: function  # a decorator factory (@triton.autotune(...))
        raise RuntimeError(f"{name} is not available on CPU (triton is not installed)")

    return stand_in
