"""Context parallelism's data side on CPU (2 gloo ranks, CP=2): each rank keeps its load-balanced chunks of
every sequence, and the loss and token count of the step are summed over the CP ranks. The attention
side (Transformer Engine's ring exchange) needs GPUs and is refused on CPU (test_train_runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def _rank(rank: int, port: int, out: str) -> None:
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.train import runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    initialize_parallel(tp=1, pp=1, cp=2)
    try:
        tokens = torch.arange(16).view(1, 16)
        labels, loss_mask, positions = tokens + 100, torch.ones(1, 16), torch.arange(16).view(1, 16)
        mine = runtime.cp_slice(tokens, labels, loss_mask, positions)
        per_token_loss = mine[0].float()  # a stand-in for the model's per-token cross entropy
        _, _, report = runtime._loss_func(mine[2], per_token_loss)
        loss_sum, count = runtime._global_loss([report])
        torch.save({"slices": mine, "cp": runtime.context_parallel_size(), "loss": (loss_sum, count)},
                   Path(out) / f"rank{rank}.pt")
    finally:
        destroy_parallel()


@pytest.mark.slow
def test_each_cp_rank_keeps_its_balanced_chunks_and_the_loss_is_summed_over_them(tmp_path):
    import torch.multiprocessing as mp

    from specialize.model.parallel import free_port

    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["cp"] for r in ranks] == [2, 2]
    # 4 chunks of 4 tokens: rank 0 holds chunks 0 and 3 (cheapest and dearest under causal attention), rank 1 chunks 1 and 2
    assert ranks[0]["slices"][0].tolist() == [[0, 1, 2, 3, 12, 13, 14, 15]]
    assert ranks[1]["slices"][0].tolist() == [[4, 5, 6, 7, 8, 9, 10, 11]]
    for r in ranks:  # labels, mask and positions are cut the same way as the tokens
        assert torch.equal(r["slices"][1], r["slices"][0] + 100) and torch.equal(r["slices"][3], r["slices"][0])
        assert r["loss"] == (float(sum(range(16))), 16.0)  # the whole sequence's loss and count, on every rank
