"""Fixtures for the model tests: megatron parallel state in this process (TP=PP=1, gloo on CPU)."""

from __future__ import annotations

import pytest


@pytest.fixture
def megatron_single():
    """Megatron initialised for one process; torn down afterwards so other tests start clean."""
    from specialize.model.parallel import destroy_parallel, initialize_parallel

    initialize_parallel(tp=1, pp=1, seed=1234)
    yield
    destroy_parallel()
