"""Fixtures for the model tests: megatron parallel state, tiny random Hugging Face Qwen2 checkpoints."""

from __future__ import annotations

import pytest
from model_testing import make_hf_model, make_hf_qwen2


@pytest.fixture
def megatron_single():
    """Megatron initialised for one process; torn down afterwards so other tests start clean."""
    from specialize.model.parallel import destroy_parallel, initialize_parallel

    initialize_parallel(tp=1, pp=1, seed=1234)
    yield
    destroy_parallel()


@pytest.fixture(scope="session")
def hf_untied(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf-untied")
    model = make_hf_qwen2(directory, tied=False)
    return directory, model


@pytest.fixture(scope="session")
def hf_tied(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf-tied")
    model = make_hf_qwen2(directory, tied=True, seed=1)
    return directory, model


@pytest.fixture(scope="session")
def hf_qwen3_untied(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf-qwen3-untied")
    return directory, make_hf_model(directory, "qwen3", tied=False, seed=2)


@pytest.fixture(scope="session")
def hf_qwen3_tied(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf-qwen3-tied")
    return directory, make_hf_model(directory, "qwen3", tied=True, seed=3)
