"""Per-GPU memory estimate for training a preset at a TP/PP/DP layout (``specialize model info``).

The recipe megatron users size jobs with:
- weights: bf16, 2 bytes per parameter held by the GPU (its TP slice of its PP stage);
- grads: fp32 ``main_grad`` buffers of megatron's DDP, 4 bytes per parameter;
- optimizer: fp32 master weights + Adam's two moments, 12 bytes per parameter, divided over DP
  by the distributed optimizer;
- activations: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models"), bytes per layer (16-bit activations, ``s`` tokens per sequence, ``b`` micro-batch,
  ``h`` hidden, ``a`` heads, ``t`` = TP):
    - ``selective`` recomputation (or flash attention, which never stores the s x s scores):
      ``s b h (10 + 24/t)``, or ``34 s b h / t`` with sequence parallelism;
    - ``none`` without flash attention adds the attention scores, softmax and its dropout mask:
      ``5 a s^2 b / t``;
    - ``full`` recomputation keeps only each layer's input: ``2 s b h`` (``/ t`` with sequence parallelism).
  Context parallelism splits every sequence over ``cp`` GPUs: each holds ``s / cp`` tokens' worth.
  Under 1F1B the first stage keeps ``pp`` micro-batches of its ``L/pp`` layers in flight, i.e. ``L``
  layers' worth. The last stage also holds fp32 logits.
Real usage adds the CUDA context, allocator fragmentation and communication buffers (a few GB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from specialize.model.architecture import ModelPreset

GIB = 1024**3
#: Activation recomputation modes, as Megatron-LM offers them (``model.recompute`` of a run config too).
RECOMPUTE_MODES = ("none", "selective", "full")


@dataclass
class MemoryEstimate:
    parameters: int  # whole model
    parameters_per_gpu: int  # the largest stage's TP slice
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def estimate_memory(
    preset: ModelPreset,
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    cp: int = 1,
    seq_length: int = 4096,
    micro_batch: int = 1,
    distributed_optimizer: bool = True,
    recompute: str = "selective",
    sequence_parallel: bool | None = None,
    flash_attention: bool = True,
) -> MemoryEstimate:
    """``sequence_parallel`` defaults to on whenever ``tp > 1`` (what the presets' layouts assume).
    ``dp`` counts data-parallel replicas; the GPUs are ``tp * pp * cp * dp``: the distributed
    optimizer shards its state over DP x CP, as megatron does."""
    preset.validate_parallel(tp, pp)
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute {recompute!r}: expected none, selective or full")
    if seq_length % cp:
        raise ValueError(f"seq_length {seq_length} is not divisible by cp={cp}")
    sequence_parallel = tp > 1 if sequence_parallel is None else sequence_parallel
    h, vocab = preset.hidden_size, preset.padded_vocab_size(tp)
    total = preset.num_parameters(padded_tp=tp)
    embedding = vocab * h
    output = 0 if preset.tie_word_embeddings else vocab * h
    per_layer = (total - h - embedding - output) // preset.num_layers
    layers_per_stage = preset.num_layers // pp
    if pp == 1:
        largest_stage = total
    else:  # the last stage holds the output layer (a copy of the embedding when tied)
        largest_stage = max(layers_per_stage * per_layer + embedding, layers_per_stage * per_layer + h + vocab * h)
    per_gpu = -(-largest_stage // tp)
    tokens = seq_length // cp * micro_batch  # this GPU's share of every sequence
    if recompute == "full":
        layer_activations = 2 * tokens * h // (tp if sequence_parallel else 1)
    else:
        layer_activations = 34 * tokens * h // tp if sequence_parallel else tokens * h * 10 + 24 * tokens * h // tp
        if recompute == "none" and not flash_attention:  # the s x s scores; each CP rank's queries see all keys
            layer_activations += 5 * preset.num_attention_heads * tokens * seq_length // tp
    logits = 4 * tokens * vocab // tp
    first_stage = preset.num_layers * layer_activations + (logits if pp == 1 else 0)
    last_stage = layers_per_stage * layer_activations + logits
    return MemoryEstimate(
        parameters=preset.num_parameters(),
        parameters_per_gpu=per_gpu,
        weights_bytes=2 * per_gpu,
        grads_bytes=4 * per_gpu,
        optimizer_bytes=12 * per_gpu // (dp * cp if distributed_optimizer else 1),
        activations_bytes=max(first_stage, last_stage),
    )
