"""The training loop shared by continual pretraining and SFT: read it top to bottom.

``run_training(config, provider)``: parallel setup -> model (from a preset, a specialize checkpoint,
or a Hugging Face checkpoint converted on the fly) -> megatron DDP + (distributed) optimizer + LR
schedule -> datasets from the provider -> resume from the latest checkpoint -> steps through
``get_forward_backward_func`` (micro-batches, pipeline schedule) -> logging, validation, checkpoints.

The loss is the token mean over the whole global batch (megatron's ``calculate_per_token_loss``:
each micro-batch returns its masked loss sum and token count; gradients are divided by the global
count in ``finalize_model_grads``), so micro-batching and data parallelism do not change it.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


def resolve_model_source(source: str, output: Path, tp: int, pp: int):
    """(preset, checkpoint dir to load or None, tokenizer source) for ``--from`` (any form
    ``specialize.model.source`` accepts: a run's newest checkpoint, a step, a checkpoint, ...).

    Hugging Face weights (a directory or a Hub model) are converted once into ``<output>/converted``;
    a project preset without weights starts from random initialisation.
    """
    from specialize.model.checkpoint import META_FILE
    from specialize.model.source import resolve

    resolved = resolve(source)
    if resolved.random_init:
        return resolved.preset, None, resolved.tokenizer
    if not resolved.needs_conversion:
        return resolved.preset, resolved.checkpoint, resolved.tokenizer
    converted = output / "converted"
    if not (converted / META_FILE).is_file():
        if dist.get_rank() == 0:
            from specialize.convert import hf_to_megatron

            hf_to_megatron(source, str(converted), tp, pp)
        dist.barrier()
    imported = resolve(converted)
    return imported.preset, imported.checkpoint, imported.tokenizer


CONVERSION_DONE, CONVERSION_FAILED = "converted.done", "converted.failed"


def needs_conversion(source: str) -> bool:
    """Whether ``--from`` names Hugging Face weights (a directory or a Hub model) to import first."""
    from specialize.model.source import resolve

    return resolve(source).needs_conversion


def convert_before_process_group(source: str, output: Path, tp: int, pp: int, *, rank: int | None = None,
                                 wait_s: float = 24 * 3600.0, poll_s: float = 2.0) -> None:
    """Import a Hugging Face ``--from`` into ``<output>/converted`` before any process group exists.

    A 72B import reads ~1.2 TB; done on rank 0 after the group is up, the other ranks waited for it
    under the collectives' timeout (NCCL's 10 minutes by default) and the job died. Here the launcher's
    rank 0 converts in a child process (the converter sets up its own group of tp x pp ranks, on CPU
    when a job is running) and every other rank waits on the shared output directory for
    ``converted.done`` (or ``converted.failed``, whose message it raises), with no collective pending.
    """
    import subprocess
    import sys
    import time

    from specialize.model.checkpoint import META_FILE
    from specialize.model.parallel import launcher_free_environment

    converted = output / "converted"
    done, failed = output / CONVERSION_DONE, output / CONVERSION_FAILED
    if not needs_conversion(source) or (converted / META_FILE).is_file():
        return  # nothing to import, or imported by an earlier start of this run (the metadata is written last)
    if (int(os.environ.get("RANK", "0")) if rank is None else rank) == 0:
        output.mkdir(parents=True, exist_ok=True)
        failed.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
        command = [sys.executable, "-m", "specialize.cli", "convert", "hf-to-megatron", "--from", source, "--to", str(converted),
                   "--tp", str(tp), "--pp", str(pp)]
        result = subprocess.run(command, env=launcher_free_environment(), capture_output=True, text=True)
        if result.returncode != 0:
            message = f"--from {source}: conversion to {converted} failed: {(result.stderr or result.stdout).strip()[-2000:]}"
            failed.write_text(message, encoding="utf-8")
            raise RuntimeError(message)
        done.write_text(source + "\n", encoding="utf-8")
        return
    deadline = time.monotonic() + wait_s
    while not (done.is_file() and (converted / META_FILE).is_file()):
        if failed.is_file():
            raise RuntimeError(failed.read_text(encoding="utf-8"))
        if time.monotonic() > deadline:
            raise TimeoutError(f"--from {source}: rank 0 did not finish converting into {converted} within {wait_s:.0f} s")
        time.sleep(poll_s)


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
    """This CP rank's share of [batch, seq] tensors: chunks r and 2cp-1-r of 2cp (causal load balance)."""
    from megatron.core.utils import get_batch_on_this_cp_rank

    sliced = get_batch_on_this_cp_rank({str(i): tensor for i, tensor in enumerate(tensors)})
    return [sliced[str(i)] for i in range(len(tensors))]


def long_context_preset(preset, config: RunConfig) -> tuple[object, list[str]]:
    """The preset trained: ``model.rotary_base`` replaces the checkpoint's RoPE base, and a
    ``train.seq_length`` beyond ``max_position_embeddings`` raises it (both recorded in every checkpoint
    and written to the export's config.json). Returns (preset, messages for the log)."""
    m, t = config.model, config.train
    notes, changes = [], {}
    if m.rotary_base is not None and m.rotary_base != preset.rotary_base:
        changes["rotary_base"] = float(m.rotary_base)
        notes.append(f"RoPE base {preset.rotary_base:g} -> {m.rotary_base:g} (model.rotary_base)")
    if t.seq_length > preset.max_position_embeddings:
        changes["max_position_embeddings"] = t.seq_length
        notes.append(f"max_position_embeddings {preset.max_position_embeddings} -> {t.seq_length} (train.seq_length)")
    return (dataclasses.replace(preset, **changes) if changes else preset), notes


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
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from specialize.model.build import _have_transformer_engine, build_gpt_model, transformer_config
    from specialize.model.checkpoint import load_model_checkpoint
    from specialize.model.cpu_compat import cuda_type_names
    from specialize.model.parallel import initialize_parallel
    from specialize.tokenization import load_tokenizer
    from specialize.train import megatron_fixes

    t, m, o = config.train, config.model, config.optimizer
    output = Path(config.output)
    if t.threads:
        torch.set_num_threads(t.threads)
    if preset is None:
        convert_before_process_group(m.source, output, m.tp, m.pp)
    on_gpu, have_te = torch.cuda.is_available(), _have_transformer_engine()
    speed = plan_speed(config.speed, on_gpu=on_gpu, have_te=have_te,
                       have_fused_wgrad=fused_wgrad_available(), distributed_optimizer=o.distributed)
    if speed.cuda_device_max_connections is not None:  # read when the CUDA context is made: before the process group
        os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = str(speed.cuda_device_max_connections)
    if m.cp > 1 and not (on_gpu and have_te):
        raise ValueError(f"model.cp={m.cp} (context parallelism) needs GPUs with Transformer Engine: its attention "
                         "passes keys and values around the CP ring, and megatron's local attention (CPU) has no "
                         "such path; use model.cp=1 here, or tp/pp/recompute to fit long sequences")
    initialize_parallel(tp=m.tp, pp=m.pp, cp=m.cp, seed=t.seed, timeout_minutes=t.distributed_timeout_minutes)
    megatron_fixes.apply()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
    num_microbatches = check_config(config, world)
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")

    # -- model ------------------------------------------------------------------------------------
    if preset is None:
        preset, init_dir, tokenizer_source = resolve_model_source(m.source, output, m.tp, m.pp)
    else:
        init_dir, tokenizer_source = None, preset.tokenizer
    preset, preset_notes = long_context_preset(preset, config)
    tokenizer = load_tokenizer(tokenizer_source)
    bf16 = t.precision == "bf16" or (t.precision == "auto" and on_gpu)
    if m.sequence_parallel and not (on_gpu and have_te):
        raise ValueError("model.sequence_parallel needs Transformer Engine on GPU: megatron's local layer spec "
                         "(torch RMSNorm, used on CPU) does not support it; drop --set model.sequence_parallel=true")
    attention = plan_attention(m.attention, on_gpu=on_gpu, have_te=have_te)
    overrides = speed.transformer_overrides()
    overrides.update(m.overrides)  # a TransformerConfig field set in model.overrides wins
    overrides.update(attention.config_overrides())
    if m.cp > 1 and attention.spec == "local":
        raise ValueError("model.cp > 1 needs Transformer Engine attention; model.attention=local has no context parallelism")
    overrides.update(recompute_settings(m.recompute))
    tconfig = transformer_config(preset, tp=m.tp, pp=m.pp, cp=m.cp, bf16=bf16, sequence_parallel=m.sequence_parallel,
                                 calculate_per_token_loss=True, **overrides)
    module = build_gpt_model(preset, tconfig, local_spec=attention.spec == "local")
    if init_dir is not None:
        load_model_checkpoint(module, init_dir)
    ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=speed.overlap_grad_reduce,
                                               overlap_param_gather=speed.overlap_param_gather,
                                               use_distributed_optimizer=o.distributed)
    model = DistributedDataParallel(tconfig, ddp_config, module)
    with cuda_type_names():
        optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=o.lr, min_lr=o.lr * o.min_lr_ratio, weight_decay=o.weight_decay,
                        adam_beta1=o.beta1, adam_beta2=o.beta2, adam_eps=o.eps, clip_grad=o.clip_grad,
                        bf16=bf16, params_dtype=tconfig.params_dtype, use_distributed_optimizer=o.distributed,
                        overlap_param_gather=speed.overlap_param_gather),
        [model],
    )
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=o.lr, min_lr=o.lr * (o.min_lr_ratio if o.schedule == "cosine" else 1.0),
        lr_warmup_steps=warmup_steps(config), lr_decay_steps=t.steps, lr_decay_style=o.schedule,
        start_wd=o.weight_decay, end_wd=o.weight_decay, wd_incr_steps=t.steps, wd_incr_style="constant")
    tconfig.finalize_model_grads_func = finalize_model_grads
    tconfig.grad_scale_func = optimizer.scale_loss
    forward_backward = get_forward_backward_func()

    # -- data -------------------------------------------------------------------------------------
    if provider is None:
        from specialize.train.data import ShardBlendProvider

        provider = ShardBlendProvider(config.data)
    evals = t.steps // config.log.eval_every + 1 if config.log.eval_every else 0
    request = DataRequest(
        seq_length=t.seq_length, seed=t.seed, train_samples=t.steps * t.global_batch_size,
        valid_samples=config.log.eval_iters * t.global_batch_size if evals else 0,
        vocab_size=tokenizer.vocab_size, eod_id=tokenizer.eod_id, tokenizer_fingerprint=tokenizer.fingerprint,
        cache_dir=config.data.cache_dir or str(output / "data_cache"))
    splits = provider.build(request)
    check_dataset(splits.train, "train", t.seq_length, tokenizer.vocab_size)
    if splits.valid is not None:
        check_dataset(splits.valid, "valid", t.seq_length, tokenizer.vocab_size)

    # -- resume -----------------------------------------------------------------------------------
    start_step, bad_in_row, skipped = 0, 0, 0
    resume_from = latest_checkpoint(output) if config.checkpoint.resume else None
    if resume_from is not None:
        state = load_checkpoint(resume_from, model=model, optimizer=optimizer, scheduler=scheduler,
                                load_optimizer=config.checkpoint.load_optimizer)
        start_step, bad_in_row, skipped = state["step"], state["bad_in_row"], state["skipped"]
    logger = RunLogger(output, enabled=rank == 0, tensorboard=config.log.tensorboard, progress=config.log.progress,
                       total_steps=t.steps, start_step=start_step)
    if resume_from is not None:
        logger.message(f"resumed from {resume_from} at step {start_step}")
    if init_dir is None and resume_from is None:
        logger.message(f"{preset.name}: no checkpoint given, starting from random weights")
    for note in preset_notes:
        logger.message(note)
    logger.message(f"data: {splits.description}")
    if on_gpu:
        logger.message(speed.summary())
    if len(splits.train) < request.train_samples:
        logger.message(f"the train dataset has {len(splits.train)} samples for {request.train_samples} needed: "
                       f"reading it again from the start ({request.train_samples / len(splits.train):.1f} passes)")
    tokens_per_step = t.global_batch_size * t.seq_length
    peak = peak_flops(config.log.peak_tflops)
    step_pairs = [0.0]  # attention query-key pairs of this rank's micro-batches in the last step (for MFU)

    def indices(dataset, step):
        return microbatch_indices(step, global_batch=t.global_batch_size, micro_batch=t.micro_batch_size,
                                  dp_rank=dp_rank, dp_size=dp_size, num_microbatches=num_microbatches,
                                  dataset_len=len(dataset))

    prefetcher = Prefetcher(lambda step: StepBatches(splits.train, indices(splits.train, step), device, pin=speed.prefetch and on_gpu),
                            enabled=speed.prefetch, last_step=t.steps)

    def run_batches(dataset, step, forward_only):
        if forward_only:
            batches = StepBatches(dataset, indices(dataset, step), device)
        else:
            batches = prefetcher.get(step)
            step_pairs[0] = batches.attended_pairs
        return forward_backward(
            forward_step_func=partial(_forward_step, attention.boundaries), data_iterator=batches,
            model=[model], num_microbatches=num_microbatches, seq_length=t.seq_length,
            micro_batch_size=t.micro_batch_size, decoder_seq_length=t.seq_length, forward_only=forward_only)

    @contextlib.contextmanager
    def parameters_gathered():
        """With overlap_param_gather the updated parameters arrive in forward pre-hooks; evaluation and
        checkpoints need them all now (Megatron-LM disables the hooks around both, the same way)."""
        if speed.overlap_param_gather:
            model.disable_forward_pre_hook()  # finishes the pending parameter all-gather
        try:
            yield
        finally:
            if speed.overlap_param_gather:
                model.enable_forward_pre_hook()

    def validate(step) -> float | None:
        if splits.valid is None:
            return None
        with parameters_gathered():
            return _validate(step)

    def _validate(step) -> float:
        model.eval()
        total = count = 0.0
        with torch.no_grad():
            for i in range(config.log.eval_iters):
                loss_sum, tokens = _global_loss(run_batches(splits.valid, i, True))
                total, count = total + loss_sum, count + tokens
        model.train()
        value = total / max(count, 1.0)
        logger.record({"kind": "valid", "step": step, "loss": value})
        return value

    # A plain (non-distributed) optimizer saves model-space tensors whatever the format asks: they reload anywhere.
    optimizer_format = config.checkpoint.optimizer_format if o.distributed else "fully_reshardable"
    async_save = config.checkpoint.async_save if config.checkpoint.async_save is not None else on_gpu
    saves = AsyncSaves(async_save)

    def save(step, *, background: bool):
        state = {"bad_in_row": bad_in_row, "skipped": skipped, "consumed_samples": step * t.global_batch_size,
                 "data": splits.description}
        with parameters_gathered():
            return save_checkpoint(output, step, model=model, optimizer=optimizer, scheduler=scheduler, preset=preset,
                                   tokenizer_source=tokenizer_source, state=state, config_yaml=config.to_yaml(),
                                   keep_last=config.checkpoint.keep_last, optimizer_format=optimizer_format,
                                   saves=saves if background else None)

    # -- loop -------------------------------------------------------------------------------------
    stop = _StopFlag()
    stop.install()
    last_loss = last_valid = None
    checkpoint = resume_from
    interrupted = False
    model.train()
    step = start_step
    if config.log.eval_every and start_step == 0:
        last_valid = validate(0)  # the starting point, so "validation loss falls" is visible from step 0
    try:
        while step < t.steps:
            started = time.perf_counter()
            model.zero_grad_buffer()
            optimizer.zero_grad()
            losses = run_batches(splits.train, step, False)
            loss_sum, tokens = _global_loss(losses)
            loss = loss_sum / max(tokens, 1.0)
            scheduler.step(increment=1)  # the LR of step k (1-based) is schedule(k)
            grad_norm = None
            if math.isfinite(loss):
                _, grad_norm, _ = optimizer.step()
                bad_in_row = 0
            else:  # skip the update; the gradients are discarded by the next zero_grad
                bad_in_row += 1
                skipped += 1
                logger.message(f"step {step + 1}: loss is {loss}; update skipped ({bad_in_row} in a row)")
                if bad_in_row >= t.max_bad_steps:
                    raise BadLossError(f"{bad_in_row} non-finite losses in a row at step {step + 1}: stopping "
                                       f"(lower optimizer.lr, check the data, or resume from an earlier checkpoint)")
            step += 1
            elapsed = time.perf_counter() - started
            last_loss = loss
            if step % config.log.every == 0 or step == t.steps:
                throughput = tokens_per_step / elapsed
                mfu = step_flops(preset, tokens_per_step, _data_parallel_sum(step_pairs[0], device)) / (elapsed * peak * world) if peak else None
                logger.record({
                    "kind": "train", "step": step, "loss": loss, "lr": scheduler.get_lr(optimizer.param_groups[0]),
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "tokens_per_s": throughput,
                    "mfu": mfu,
                    "memory_gb": _memory_gb(), "step_time_s": elapsed, "skipped": skipped,
                })
            if config.log.eval_every and (step % config.log.eval_every == 0 or step == t.steps):
                last_valid = validate(step)
            flag = torch.tensor([1.0 if stop.raised else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            saves.poll()
            if flag.item() or step == t.steps:  # the last save of the run: published before returning
                saves.wait()
                checkpoint = save(step, background=False)
            elif step % config.checkpoint.save_every == 0:
                checkpoint = save(step, background=True)
            if flag.item():
                interrupted = True
                logger.message(f"stopped by signal after step {step}; checkpoint {checkpoint}")
                break
    except BaseException:
        saves.abort()  # an unpublished background save stays a .partial; latest keeps the previous checkpoint
        raise
    finally:
        prefetcher.close()
        stop.restore()
        logger.close()
    return RunResult(step, interrupted, last_loss, last_valid, checkpoint, skipped)
