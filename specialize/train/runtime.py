"""The training loop shared by continual pretraining and SFT: read ``Trainer`` top to bottom.

``run_training(config, provider)``: parallel setup -> model (from any ``--from``: ``starting_point``) ->
megatron DDP + (distributed) optimizer + LR schedule -> datasets from the provider -> resume from the
latest checkpoint -> steps through ``get_forward_backward_func`` (micro-batches, pipeline schedule) ->
logging, validation, checkpoints.

The loss is the token mean over the whole global batch (megatron's ``calculate_per_token_loss``:
each micro-batch returns its masked loss sum and token count; gradients are divided by the global
count in ``finalize_model_grads``), so micro-batching and data parallelism do not change it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from specialize.train.attention import plan_attention, thd_batch
from specialize.train.batches import Prefetcher, StepBatches, block_causal_mask, check_dataset, microbatch_indices
from specialize.train.checkpointing import AsyncSaves, latest_checkpoint, load_checkpoint, save_checkpoint
from specialize.train.config import RunConfig, check_config, recompute_settings, warmup_steps
from specialize.train.data_api import DataRequest, DatasetProvider
from specialize.train.metrics import RunLogger, peak_flops, step_flops
from specialize.train.speed import fused_wgrad_available, plan_speed
from specialize.train.starting_point import convert_before_process_group, long_context_preset, resolve_model_source


@dataclass
class RunResult:
    steps_done: int  # the step the run stopped at (== train.steps unless interrupted)
    interrupted: bool
    last_loss: float | None
    last_valid_loss: float | None
    checkpoint: Path | None
    skipped_steps: int


class BadLossError(RuntimeError):
    """Too many NaN/inf losses in a row: the run stops rather than train on garbage."""


class _StopFlag:
    """SIGTERM (Kubernetes eviction) / SIGINT: finish the step, save, exit."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _loss_func(loss_mask: torch.Tensor, output: torch.Tensor):
    """Masked sum and token count of one micro-batch (megatron divides by the global count)."""
    losses = output.float().reshape(-1)
    mask = loss_mask.reshape(-1).float()
    total = torch.sum(losses * mask)
    count = mask.sum().to(torch.int)
    return total, count, {"lm loss": torch.stack([total.detach(), mask.sum().detach()])}


def _forward_step(boundaries: str, data_iterator, model):
    """One micro-batch; document boundaries as the attention plan says (``specialize.train.attention``).

    Under context parallelism each rank keeps its 2 load-balanced chunks of every sequence (megatron's
    ``get_batch_on_this_cp_rank``); Transformer Engine's attention exchanges keys and values around the
    CP ring, and gradients and token counts are reduced over DP x CP (``finalize_model_grads``).
    """
    batch = next(data_iterator)
    tokens, labels, loss_mask, positions = batch.tokens, batch.labels, batch.loss_mask, batch.position_ids
    attention_mask = packed = None
    if context_parallel_size() > 1:
        if batch.has_segments:
            raise ValueError("model.cp > 1 with document boundaries (data.reset_attention_mask, SFT packing) is not "
                             "supported: megatron's THD context parallelism needs padded cu_seqlens")
        tokens, labels, loss_mask, positions = cp_slice(tokens, labels, loss_mask, positions)
    if batch.has_segments:
        if boundaries == "thd":
            tokens, labels, loss_mask, positions, packed = thd_batch(tokens, labels, loss_mask, positions, batch.segment_ids)
        else:
            attention_mask = block_causal_mask(batch.segment_ids)
    output = model(tokens, positions, attention_mask, labels=labels, packed_seq_params=packed)
    return output, partial(_loss_func, loss_mask)


def context_parallel_size() -> int:
    from megatron.core import parallel_state as ps

    return ps.get_context_parallel_world_size()


def cp_slice(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """This CP rank's share of [batch, seq] tensors: chunks r and 2cp-1-r of 2cp (causal load balance).

    megatron-core 0.19 added a required ``is_hybrid_cp`` and no longer falls back to the CP group of
    ``parallel_state`` (without ``cp_group`` it would split over the whole world); both are passed.
    """
    import inspect

    from megatron.core import parallel_state as ps
    from megatron.core.utils import get_batch_on_this_cp_rank

    arguments = {"cp_group": ps.get_context_parallel_group()}
    if "is_hybrid_cp" in inspect.signature(get_batch_on_this_cp_rank).parameters:
        arguments["is_hybrid_cp"] = False
    sliced = get_batch_on_this_cp_rank({str(i): tensor for i, tensor in enumerate(tensors)}, **arguments)
    return [sliced[str(i)] for i in range(len(tensors))]


def _global_loss(losses: list[dict]) -> tuple[float, float]:
    """(summed loss, token count) over the global batch, on every rank."""
    from megatron.core import parallel_state as ps

    local = torch.zeros(2, dtype=torch.float64)
    for item in losses:
        local += item["lm loss"].double().cpu()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    local = local.to(device)
    if ps.is_pipeline_last_stage(ignore_virtual=True):  # CP ranks hold different tokens of the same samples
        dist.all_reduce(local, group=ps.get_data_parallel_group(with_context_parallel=True))
    else:
        local.zero_()
    dist.all_reduce(local, group=ps.get_pipeline_model_parallel_group())
    return float(local[0]), float(local[1])


def _data_parallel_sum(value: float, device: torch.device) -> float:
    """``value`` summed over the data-parallel ranks (each holds different micro-batches)."""
    from megatron.core import parallel_state as ps

    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total, group=ps.get_data_parallel_group())
    return float(total[0])


def _memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def run_training(config: RunConfig, provider: DatasetProvider | None = None, *, preset=None) -> RunResult:
    """Train as ``config`` says on ``provider``'s data (default: the Arrow shard blend of ``config.data``).

    ``preset`` (a ``ModelPreset``) replaces ``model.source`` with that architecture from random weights:
    for benchmarks and tests of shapes that have no named preset.

    Collective: under torchrun every process calls it. Resumes from ``<output>/checkpoints/latest``
    when ``checkpoint.resume`` is on. Returns after the last step or after a SIGTERM/SIGINT save.
    """
    return Trainer(config, provider, preset=preset).train()


class Trainer:
    """One run, in the order it happens (the shape of torchtitan's ``Trainer``).

    Set-up (``__init__``): parallel state -> model -> optimizer and LR schedule -> data -> resume.
    The loop (``train``): ``train_step`` -> ``log_step`` -> ``validate`` when due -> the checkpoint policy
    (``save_due``), until ``train.steps`` or a stop signal.
    """

    def __init__(self, config: RunConfig, provider: DatasetProvider | None = None, *, preset=None) -> None:
        self.config = config
        self.output = Path(config.output)
        self.step, self.bad_in_row, self.skipped = 0, 0, 0
        self.step_pairs = 0.0  # attention query-key pairs of this rank's micro-batches in the last step (for MFU)
        self._setup_parallel(convert_first=preset is None)
        self._build_model(preset)
        self._build_optimizer()
        self._build_data(provider)
        self._resume()

    # -- set-up -----------------------------------------------------------------------------------
    def _setup_parallel(self, *, convert_first: bool) -> None:
        """Import Hugging Face weights (before any process group), plan the kernels, start the groups."""
        from megatron.core import parallel_state as ps

        from specialize.model.build import _have_transformer_engine
        from specialize.model.parallel import initialize_parallel
        from specialize.train import megatron_fixes

        t, m, o = self.config.train, self.config.model, self.config.optimizer
        if t.threads:
            torch.set_num_threads(t.threads)
        if convert_first:
            convert_before_process_group(m.source, self.output, m.tp, m.pp)
        self.on_gpu, self.have_te = torch.cuda.is_available(), _have_transformer_engine()
        self.speed = plan_speed(self.config.speed, on_gpu=self.on_gpu, have_te=self.have_te,
                                have_fused_wgrad=fused_wgrad_available(), distributed_optimizer=o.distributed)
        if self.speed.cuda_device_max_connections is not None:  # read when the CUDA context is made: before the group
            os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = str(self.speed.cuda_device_max_connections)
        if m.cp > 1 and not (self.on_gpu and self.have_te):
            raise ValueError(f"model.cp={m.cp} (context parallelism) needs GPUs with Transformer Engine: its attention "
                             "passes keys and values around the CP ring, and megatron's local attention (CPU) has no "
                             "such path; use model.cp=1 here, or tp/pp/recompute to fit long sequences")
        initialize_parallel(tp=m.tp, pp=m.pp, cp=m.cp, seed=t.seed, timeout_minutes=t.distributed_timeout_minutes)
        megatron_fixes.apply()
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.on_gpu else torch.device("cpu")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.num_microbatches = check_config(self.config, self.world)
        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        if self.rank == 0:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")

    def _build_model(self, preset) -> None:
        """The starting point (``--from``, with the long-context changes), as megatron's DDP-wrapped GPTModel."""
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

        from specialize.model.build import build_gpt_model, transformer_config
        from specialize.model.checkpoint import load_model_checkpoint
        from specialize.tokenization import load_tokenizer

        t, m, o = self.config.train, self.config.model, self.config.optimizer
        if preset is None:
            preset, self.init_dir, self.tokenizer_source = resolve_model_source(m.source, self.output, m.tp, m.pp)
        else:
            self.init_dir, self.tokenizer_source = None, preset.tokenizer
        self.preset, self.preset_notes = long_context_preset(preset, self.config)
        self.tokenizer = load_tokenizer(self.tokenizer_source)
        self.bf16 = t.precision == "bf16" or (t.precision == "auto" and self.on_gpu)
        if m.sequence_parallel and not (self.on_gpu and self.have_te):
            raise ValueError("model.sequence_parallel needs Transformer Engine on GPU: megatron's local layer spec "
                             "(torch RMSNorm, used on CPU) does not support it; drop --set model.sequence_parallel=true")
        self.attention = plan_attention(m.attention, on_gpu=self.on_gpu, have_te=self.have_te)
        if m.cp > 1 and self.attention.spec == "local":
            raise ValueError("model.cp > 1 needs Transformer Engine attention; model.attention=local has no context parallelism")
        overrides = self.speed.transformer_overrides()
        overrides.update(m.overrides)  # a TransformerConfig field set in model.overrides wins
        overrides.update(self.attention.config_overrides())
        overrides.update(recompute_settings(m.recompute))
        self.tconfig = transformer_config(self.preset, tp=m.tp, pp=m.pp, cp=m.cp, bf16=self.bf16,
                                          sequence_parallel=m.sequence_parallel, calculate_per_token_loss=True, **overrides)
        module = build_gpt_model(self.preset, self.tconfig, local_spec=self.attention.spec == "local")
        if self.init_dir is not None:
            load_model_checkpoint(module, self.init_dir)
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, overlap_grad_reduce=self.speed.overlap_grad_reduce,
            overlap_param_gather=self.speed.overlap_param_gather, use_distributed_optimizer=o.distributed)
        self.model = DistributedDataParallel(self.tconfig, ddp_config, module)

    def _build_optimizer(self) -> None:
        """AdamW (distributed over DP when asked) and the LR schedule of the Qwen report."""
        from megatron.core.distributed import finalize_model_grads
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from specialize.model.cpu_compat import cuda_type_names

        t, o = self.config.train, self.config.optimizer
        with cuda_type_names():
            self.optimizer = get_megatron_optimizer(
                OptimizerConfig(optimizer="adam", lr=o.lr, min_lr=o.lr * o.min_lr_ratio, weight_decay=o.weight_decay,
                                adam_beta1=o.beta1, adam_beta2=o.beta2, adam_eps=o.eps, clip_grad=o.clip_grad,
                                bf16=self.bf16, params_dtype=self.tconfig.params_dtype, use_distributed_optimizer=o.distributed,
                                overlap_param_gather=self.speed.overlap_param_gather),
                [self.model],
            )
        self.scheduler = OptimizerParamScheduler(
            self.optimizer, init_lr=0.0, max_lr=o.lr, min_lr=o.lr * (o.min_lr_ratio if o.schedule == "cosine" else 1.0),
            lr_warmup_steps=warmup_steps(self.config), lr_decay_steps=t.steps, lr_decay_style=o.schedule,
            start_wd=o.weight_decay, end_wd=o.weight_decay, wd_incr_steps=t.steps, wd_incr_style="constant")
        self.tconfig.finalize_model_grads_func = finalize_model_grads
        self.tconfig.grad_scale_func = self.optimizer.scale_loss
        self.forward_backward = get_forward_backward_func()

    def _build_data(self, provider: DatasetProvider | None) -> None:
        """The provider's train/valid splits for this run's sample counts, checked, and the prefetcher."""
        t, log = self.config.train, self.config.log
        if provider is None:
            from specialize.train.data import ShardBlendProvider

            provider = ShardBlendProvider(self.config.data)
        evals = t.steps // log.eval_every + 1 if log.eval_every else 0
        self.request = DataRequest(
            seq_length=t.seq_length, seed=t.seed, train_samples=t.steps * t.global_batch_size,
            valid_samples=log.eval_iters * t.global_batch_size if evals else 0,
            vocab_size=self.tokenizer.vocab_size, eod_id=self.tokenizer.eod_id,
            tokenizer_fingerprint=self.tokenizer.fingerprint,
            cache_dir=self.config.data.cache_dir or str(self.output / "data_cache"))
        self.splits = provider.build(self.request)
        check_dataset(self.splits.train, "train", t.seq_length, self.tokenizer.vocab_size)
        if self.splits.valid is not None:
            check_dataset(self.splits.valid, "valid", t.seq_length, self.tokenizer.vocab_size)
        pin = self.speed.prefetch and self.on_gpu
        self.prefetcher = Prefetcher(lambda step: StepBatches(self.splits.train, self._indices(self.splits.train, step),
                                                              self.device, pin=pin),
                                     enabled=self.speed.prefetch, last_step=t.steps)

    def _resume(self) -> None:
        """Continue from ``<output>/checkpoints/latest`` (weights, optimizer, schedule, counters), then open the log."""
        t, ckpt = self.config.train, self.config.checkpoint
        self.resume_from = latest_checkpoint(self.output) if ckpt.resume else None
        if self.resume_from is not None:
            state = load_checkpoint(self.resume_from, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                    load_optimizer=ckpt.load_optimizer)
            self.step, self.bad_in_row, self.skipped = state["step"], state["bad_in_row"], state["skipped"]
        self.logger = RunLogger(self.output, enabled=self.rank == 0, tensorboard=self.config.log.tensorboard,
                                progress=self.config.log.progress, total_steps=t.steps, start_step=self.step)
        if self.resume_from is not None:
            self.logger.message(f"resumed from {self.resume_from} at step {self.step}")
        if self.init_dir is None and self.resume_from is None:
            self.logger.message(f"{self.preset.name}: no checkpoint given, starting from random weights")
        for note in self.preset_notes:
            self.logger.message(note)
        self.logger.message(f"data: {self.splits.description}")
        if self.on_gpu:
            self.logger.message(self.speed.summary())
        if len(self.splits.train) < self.request.train_samples:
            self.logger.message(f"the train dataset has {len(self.splits.train)} samples for {self.request.train_samples} "
                                f"needed: reading it again from the start "
                                f"({self.request.train_samples / len(self.splits.train):.1f} passes)")
        # A plain (non-distributed) optimizer saves model-space tensors whatever the format asks: they reload anywhere.
        self.optimizer_format = ckpt.optimizer_format if self.config.optimizer.distributed else "fully_reshardable"
        self.saves = AsyncSaves(ckpt.async_save if ckpt.async_save is not None else self.on_gpu)
        self.tokens_per_step = t.global_batch_size * t.seq_length
        self.peak_flops = peak_flops(self.config.log.peak_tflops)  # looked up once, not at every logged step

    # -- the loop ---------------------------------------------------------------------------------
    def train(self) -> RunResult:
        t, log = self.config.train, self.config.log
        stop = _StopFlag()
        stop.install()
        last_loss = last_valid = None
        checkpoint, interrupted = self.resume_from, False
        self.model.train()
        if log.eval_every and self.step == 0:
            last_valid = self.validate()  # the starting point, so "validation loss falls" is visible from step 0
        try:
            while self.step < t.steps:
                started = time.perf_counter()
                loss, grad_norm = self.train_step()
                elapsed = time.perf_counter() - started
                last_loss = loss
                if self.step % log.every == 0 or self.step == t.steps:
                    self.log_step(loss, grad_norm, elapsed)
                if log.eval_every and (self.step % log.eval_every == 0 or self.step == t.steps):
                    last_valid = self.validate()
                stopping = self._stop_requested(stop)
                saved = self.save_due(stopping)
                checkpoint = saved or checkpoint
                if stopping:
                    interrupted = True
                    self.logger.message(f"stopped by signal after step {self.step}; checkpoint {checkpoint}")
                    break
        except BaseException:
            self.saves.abort()  # an unpublished background save stays a .partial; latest keeps the previous checkpoint
            raise
        finally:
            self.prefetcher.close()
            stop.restore()
            self.logger.close()
        return RunResult(self.step, interrupted, last_loss, last_valid, checkpoint, self.skipped)

    def train_step(self) -> tuple[float, float | None]:
        """One optimizer step over the global batch; a non-finite loss skips the update (and, too many in
        a row, stops the run). Returns (loss, grad norm or None)."""
        t = self.config.train
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        losses = self._run_batches(self.splits.train, self.step, forward_only=False)
        loss_sum, tokens = _global_loss(losses)
        loss = loss_sum / max(tokens, 1.0)
        self.scheduler.step(increment=1)  # the LR of step k (1-based) is schedule(k)
        grad_norm = None
        if math.isfinite(loss):
            _, grad_norm, _ = self.optimizer.step()
            self.bad_in_row = 0
        else:  # skip the update; the gradients are discarded by the next zero_grad
            self.bad_in_row += 1
            self.skipped += 1
            self.logger.message(f"step {self.step + 1}: loss is {loss}; update skipped ({self.bad_in_row} in a row)")
            if self.bad_in_row >= t.max_bad_steps:
                raise BadLossError(f"{self.bad_in_row} non-finite losses in a row at step {self.step + 1}: stopping "
                                   f"(lower optimizer.lr, check the data, or resume from an earlier checkpoint)")
        self.step += 1
        return loss, grad_norm

    def log_step(self, loss: float, grad_norm, elapsed: float) -> None:
        tokens_per_step, peak = self.tokens_per_step, self.peak_flops
        mfu = None
        if peak:
            pairs = _data_parallel_sum(self.step_pairs, self.device)
            mfu = step_flops(self.preset, tokens_per_step, pairs) / (elapsed * peak * self.world)
        self.logger.record({
            "kind": "train", "step": self.step, "loss": loss,
            "lr": self.scheduler.get_lr(self.optimizer.param_groups[0]),
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": tokens_per_step / elapsed, "mfu": mfu,
            "memory_gb": _memory_gb(), "step_time_s": elapsed, "skipped": self.skipped,
        })

    # -- evaluation -------------------------------------------------------------------------------
    def validate(self) -> float | None:
        """Token-mean loss over ``log.eval_iters`` global batches of the held-out split."""
        if self.splits.valid is None:
            return None
        with self._parameters_gathered():
            self.model.eval()
            total = count = 0.0
            with torch.no_grad():
                for i in range(self.config.log.eval_iters):
                    loss_sum, tokens = _global_loss(self._run_batches(self.splits.valid, i, forward_only=True))
                    total, count = total + loss_sum, count + tokens
            self.model.train()
        value = total / max(count, 1.0)
        self.logger.record({"kind": "valid", "step": self.step, "loss": value})
        return value

    # -- checkpoint policy ------------------------------------------------------------------------
    def save_due(self, stopping: bool) -> Path | None:
        """The run's last step and a stop signal save synchronously (after a pending background save is
        published); every ``checkpoint.save_every`` steps save in the background. Returns what was saved."""
        self.saves.poll()
        if stopping or self.step == self.config.train.steps:
            self.saves.wait()
            return self.save(background=False)
        if self.step % self.config.checkpoint.save_every == 0:
            return self.save(background=True)
        return None

    def save(self, *, background: bool) -> Path:
        t, ckpt = self.config.train, self.config.checkpoint
        state = {"bad_in_row": self.bad_in_row, "skipped": self.skipped, "consumed_samples": self.step * t.global_batch_size,
                 "data": self.splits.description}
        with self._parameters_gathered():
            return save_checkpoint(self.output, self.step, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, preset=self.preset, tokenizer_source=self.tokenizer_source,
                                   state=state, config_yaml=self.config.to_yaml(), keep_last=ckpt.keep_last,
                                   optimizer_format=self.optimizer_format, saves=self.saves if background else None)

    # -- helpers ----------------------------------------------------------------------------------
    def _indices(self, dataset, step: int):
        t = self.config.train
        return microbatch_indices(step, global_batch=t.global_batch_size, micro_batch=t.micro_batch_size,
                                  dp_rank=self.dp_rank, dp_size=self.dp_size, num_microbatches=self.num_microbatches,
                                  dataset_len=len(dataset))

    def _run_batches(self, dataset, step: int, *, forward_only: bool):
        """Forward (and backward) over this rank's micro-batches of ``step`` through megatron's schedule."""
        t = self.config.train
        if forward_only:
            batches = StepBatches(dataset, self._indices(dataset, step), self.device)
        else:
            batches = self.prefetcher.get(step)
            self.step_pairs = batches.attended_pairs
        return self.forward_backward(
            forward_step_func=partial(_forward_step, self.attention.boundaries), data_iterator=batches,
            model=[self.model], num_microbatches=self.num_microbatches, seq_length=t.seq_length,
            micro_batch_size=t.micro_batch_size, decoder_seq_length=t.seq_length, forward_only=forward_only)

    @contextlib.contextmanager
    def _parameters_gathered(self):
        """With overlap_param_gather the updated parameters arrive in forward pre-hooks; evaluation and
        checkpoints need them all now (Megatron-LM disables the hooks around both, the same way)."""
        if self.speed.overlap_param_gather:
            self.model.disable_forward_pre_hook()  # finishes the pending parameter all-gather
        try:
            yield
        finally:
            if self.speed.overlap_param_gather:
                self.model.enable_forward_pre_hook()

    def _stop_requested(self, stop: _StopFlag) -> bool:
        """Whether any rank got SIGTERM/SIGINT (all ranks must stop at the same step)."""
        flag = torch.tensor([1.0 if stop.raised else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
