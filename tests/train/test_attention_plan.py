"""Which attention a run gets and how document boundaries reach it (CPU tests of the GPU decisions)."""

from __future__ import annotations

import pytest
import torch

from specialize.train.attention import AttentionUnavailable, cu_seqlens, plan_attention, thd_batch
from specialize.train.batches import block_causal_mask


@pytest.mark.parametrize("choice, on_gpu, have_te, expected", [
    ("auto", False, False, ("local", "mask", None)),
    ("local", False, True, ("local", "mask", None)),
    ("auto", True, True, ("transformer_engine", "thd", "auto")),  # TE decides cuDNN fused vs flash: neither is switched off
    ("flash", True, True, ("transformer_engine", "thd", "flash")),
    ("local", True, True, ("local", "mask", "local")),
    ("auto", True, False, ("local", "mask", "local")),
])
def test_every_plan_honours_document_boundaries(choice, on_gpu, have_te, expected):
    plan = plan_attention(choice, on_gpu=on_gpu, have_te=have_te)
    assert (plan.spec, plan.boundaries, plan.backend) == expected
    assert (plan.spec == "transformer_engine") == (plan.boundaries == "thd")  # TE ignores masks: THD or nothing


@pytest.mark.parametrize("choice, on_gpu, have_te, message", [
    ("flash", False, False, "needs a GPU"),
    ("flash", True, False, "needs Transformer Engine"),
    ("fast", True, True, "expected auto, flash or local"),
])
def test_unavailable_attention_is_refused_before_the_run(choice, on_gpu, have_te, message):
    with pytest.raises(AttentionUnavailable, match=message):
        plan_attention(choice, on_gpu=on_gpu, have_te=have_te)


def test_backend_names_are_megatrons():
    from megatron.core.transformer.enums import AttnBackend

    assert plan_attention("flash", on_gpu=True, have_te=True).config_overrides() == {"attention_backend": AttnBackend.flash}
    assert plan_attention("auto", on_gpu=True, have_te=True).config_overrides() == {"attention_backend": AttnBackend.auto}
    assert plan_attention("auto", on_gpu=False, have_te=False).config_overrides() == {}


def test_cu_seqlens_of_a_micro_batch_laid_end_to_end():
    segments = torch.tensor([[1, 1, 2, 2, 2], [0, 0, 0, 0, 0], [3, 3, 3, 4, 4]])
    assert cu_seqlens(segments).tolist() == [0, 2, 5, 10, 13, 15]
    assert cu_seqlens(torch.tensor([[7, 7], [7, 7]])).tolist() == [0, 2, 4]  # a row's end is a boundary
    assert cu_seqlens(segments).dtype == torch.int32


def test_thd_layout_allows_exactly_what_the_block_mask_allows():
    segments = torch.tensor([[1, 1, 1, 2, 2, 3], [5, 5, 6, 6, 6, 6]])
    b, s = segments.shape
    tokens = torch.arange(b * s).reshape(b, s)
    flat_tokens, flat_labels, flat_mask, flat_positions, packed = thd_batch(tokens, tokens + 1, torch.ones(b, s),
                                                                             tokens % s, segments)
    assert flat_tokens.shape == (1, b * s) and flat_tokens.flatten().tolist() == list(range(b * s))
    assert packed.qkv_format == "thd" and packed.max_seqlen_q == 4 and packed.cu_seqlens_kv is packed.cu_seqlens_q
    document = torch.zeros(b * s, dtype=torch.long)
    bounds = packed.cu_seqlens_q.tolist()
    for index, (start, end) in enumerate(zip(bounds, bounds[1:])):
        document[start:end] = index
    thd_allowed = (document[:, None] == document[None, :]) & torch.ones(b * s, b * s, dtype=torch.bool).tril()
    mask_allowed = torch.zeros(b * s, b * s, dtype=torch.bool)
    for row in range(b):  # block-diagonal over rows, each row's allowed pairs from the mask path
        mask_allowed[row * s:(row + 1) * s, row * s:(row + 1) * s] = ~block_causal_mask(segments)[row, 0]
    assert torch.equal(thd_allowed, mask_allowed)
