"""A ModelPreset as a megatron-core ``TransformerConfig`` and ``GPTModel`` that computes Qwen's function.

What makes it Qwen (every generation shares the block): pre-norm RMSNorm with the checkpoint's eps;
SwiGLU MLP without biases; RoPE on the whole head dim in the rotate-half layout with the checkpoint's
base (megatron computes the inverse frequencies in fp32, as HF does); GQA via ``num_query_groups``;
untied input/output embeddings unless the checkpoint ties them; no dropout (megatron's default is
0.1, Qwen's is 0); softmax in fp32. What differs between generations (bias on the fused QKV projection
for Qwen 1.0/2, per-head q/k RMSNorm and no bias for Qwen3) comes from the preset's family
(``ModelFamily.transformer_flags``).

On CPU the kernels that need CUDA/apex/TE are turned off by config flags (fusions, gradient
accumulation fusion, GPU initialisation) and megatron's local (pure PyTorch) layer spec is used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from specialize.model.architecture import ModelPreset
from specialize.model.cpu_compat import cpu_mode, enable_cpu_compat


def _have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA install raising at import time
        return False
    return True


def transformer_config(
    preset: ModelPreset,
    *,
    tp: int = 1,
    pp: int = 1,
    cp: int = 1,
    params_dtype: torch.dtype = torch.float32,
    bf16: bool = False,
    sequence_parallel: bool = False,
    **overrides: Any,
):
    """The megatron ``TransformerConfig`` for ``preset`` split ``tp`` x ``pp`` ways (each sequence over ``cp``).

    ``overrides`` are passed to ``TransformerConfig`` last (e.g. ``recompute_granularity``,
    ``hidden_dropout`` for an ablation); unknown names raise TypeError from megatron itself.
    """
    enable_cpu_compat()
    from megatron.core.transformer import TransformerConfig

    preset.validate_parallel(tp, pp)
    on_cpu = cpu_mode()
    if bf16 and params_dtype == torch.float32:
        params_dtype = torch.bfloat16
    settings: dict[str, Any] = dict(
        num_layers=preset.num_layers,
        hidden_size=preset.hidden_size,
        num_attention_heads=preset.num_attention_heads,
        num_query_groups=preset.num_query_groups,
        kv_channels=preset.head_dim,
        ffn_hidden_size=preset.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=preset.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        **preset.spec.transformer_flags(),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        attention_softmax_in_fp32=True,
        apply_query_key_layer_scaling=False,
        rotary_interleaved=False,
        init_method_std=0.02,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        context_parallel_size=cp,
        sequence_parallel=sequence_parallel and tp > 1,
        params_dtype=params_dtype,
        pipeline_dtype=params_dtype,
        bf16=bf16,
        # Kernels that need CUDA (apex/TE/triton/nvfuser) are off on CPU; megatron picks them on GPU.
        use_cpu_initialization=on_cpu,
        # Needs apex's fused_weight_gradient_mlp_cuda even with TE (the output layer is megatron's
        # own ColumnParallelLinear); training turns it on where the kernel exists (``speed:``, specialize/train/speed.py).
        gradient_accumulation_fusion=False,
        bias_activation_fusion=not on_cpu,
        bias_dropout_fusion=not on_cpu,
        masked_softmax_fusion=not on_cpu,
        apply_rope_fusion=False,
        persist_layer_norm=not on_cpu,
        # The p2p path calls torch.cuda.synchronize() after batched send/recv only with this flag.
        batch_p2p_sync=not on_cpu,
    )
    settings.update(overrides)
    return TransformerConfig(**settings)


def layer_spec(config, *, local: bool = False):
    """megatron's Transformer Engine layer spec on GPU when TE is installed (unless ``local``), else the local one."""
    from megatron.core.models.gpt import gpt_layer_specs

    if not local and not cpu_mode() and _have_transformer_engine():
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec(qk_layernorm=config.qk_layernorm)
    return gpt_layer_specs.get_gpt_layer_local_spec(normalization=config.normalization, qk_layernorm=config.qk_layernorm)


def build_gpt_model(
    preset: ModelPreset,
    config,
    *,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    parallel_output: bool = True,
    local_spec: bool = False,
    rope_scaling=None,
):
    """This pipeline stage's ``GPTModel`` (megatron's parallel state must be initialised).

    ``pre_process``/``post_process`` default to whether this rank holds the first/last stage.
    ``parallel_output=False`` gathers logits over TP (for inference and tests); training keeps them
    split and uses megatron's vocab-parallel cross entropy. ``local_spec`` builds megatron's local layers
    even where Transformer Engine is installed (``model.attention: local``). ``rope_scaling`` (a
    ``specialize.model.rope_scaling.RopeScaling``) builds YaRN's rotary embedding for inference beyond the
    trained context (Qwen's dynamic NTK + LogN is applied on top of a built model: ``QwenDynamicNTK``).
    """
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(config, local=local_spec),
        vocab_size=preset.padded_vocab_size(config.tensor_model_parallel_size),
        max_sequence_length=preset.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=parallel_output,
        share_embeddings_and_output_weights=preset.tie_word_embeddings,
        position_embedding_type=rope_scaling.configure_megatron(config) if rope_scaling is not None else "rope",
        rotary_percent=1.0,
        rotary_base=preset.rotary_base,
    )
    if not cpu_mode():
        model = model.cuda(torch.cuda.current_device())
    return model
