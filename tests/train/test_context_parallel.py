"""Context parallelism's data side on CPU (4 gloo ranks: CP=2 x DP=2): each rank keeps its load-balanced
chunks of its replica's sequences, and the loss and token count of the step are summed over DP x CP. The
attention side (Transformer Engine's ring exchange) needs GPUs and is refused on CPU (test_train_runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def _rank(rank: int, port: int, out: str) -> None:
    from megatron.core import parallel_state as ps

    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.train import runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="4", LOCAL_RANK=str(rank))
    initialize_parallel(tp=1, pp=1, cp=2)
    try:
        replica = ps.get_data_parallel_rank()  # each DP replica reads other samples: here, other token values
        tokens = torch.arange(16).view(1, 16) + 1000 * replica
        labels, loss_mask, positions = tokens + 100, torch.ones(1, 16), torch.arange(16).view(1, 16)
        mine = runtime.cp_slice(tokens, labels, loss_mask, positions)
        per_token_loss = mine[0].float()  # a stand-in for the model's per-token cross entropy
        _, _, report = runtime._loss_func(mine[2], per_token_loss)
        loss_sum, count = runtime._global_loss([report])
        torch.save({"slices": mine, "cp": runtime.context_parallel_size(), "loss": (loss_sum, count),
                    "cp_rank": ps.get_context_parallel_rank(), "replica": replica}, Path(out) / f"rank{rank}.pt")
    finally:
        destroy_parallel()


@pytest.mark.slow
def test_each_cp_rank_keeps_its_balanced_chunks_and_the_loss_is_summed_over_them(tmp_path):
    import torch.multiprocessing as mp

    from specialize.model.parallel import free_port

    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=4)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(4)]
    assert [(r["cp"], r["cp_rank"], r["replica"]) for r in ranks] == [(2, 0, 0), (2, 1, 0), (2, 0, 1), (2, 1, 1)]
    # 4 chunks of 4 tokens per sequence: CP rank 0 holds chunks 0 and 3 (cheapest and dearest under causal
    # attention), CP rank 1 chunks 1 and 2 -- within its own CP group, not over the whole world
    for r in ranks:
        offset = 1000 * r["replica"]
        expected = [0, 1, 2, 3, 12, 13, 14, 15] if r["cp_rank"] == 0 else [4, 5, 6, 7, 8, 9, 10, 11]
        assert r["slices"][0].tolist() == [[t + offset for t in expected]]
        # labels, mask and positions are cut the same way as the tokens
        assert torch.equal(r["slices"][1], r["slices"][0] + 100) and torch.equal(r["slices"][3], r["slices"][0] - offset)
        # both replicas' whole sequences, on every rank: DP x CP reduced
        assert r["loss"] == (float(sum(range(16)) * 2 + 1000 * 16), 32.0)
