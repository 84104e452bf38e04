"""The sample contract of specialize.train.data_api: planted good and bad samples."""

import numpy as np
import pytest

from specialize.train.data_api import validate_sample


def _sample(n=8):
    return {
        "tokens": np.arange(n, dtype=np.int64),
        "labels": np.arange(1, n + 1, dtype=np.int64),
        "loss_mask": np.ones(n, dtype=np.float32),
        "position_ids": np.array([0, 1, 2, 0, 1, 0, 1, 2], dtype=np.int64),
        "segment_ids": np.array([0, 0, 0, 1, 1, 2, 2, 2], dtype=np.int32),
    }


def test_good_sample_passes():
    validate_sample(_sample(), seq_length=8, vocab_size=16)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("tokens", np.arange(7, dtype=np.int64), "shape"),
        ("labels", np.arange(8, dtype=np.int32), "dtype"),
        ("labels", np.full(8, 99, dtype=np.int64), "outside"),
        ("loss_mask", np.full(8, 0.5, dtype=np.float32), "0.0 and 1.0"),
        ("segment_ids", np.array([0, 0, 2, 2, 2, 2, 2, 2], dtype=np.int32), "segment_ids"),
        ("segment_ids", np.array([1] * 8, dtype=np.int32), "segment_ids"),
    ],
)
def test_bad_sample_names_field(field, value, message):
    sample = _sample()
    sample[field] = value
    with pytest.raises(ValueError, match=message):
        validate_sample(sample, seq_length=8, vocab_size=16, where="s[3]")


def test_missing_field():
    sample = _sample()
    del sample["segment_ids"]
    with pytest.raises(ValueError, match="missing fields"):
        validate_sample(sample, seq_length=8, vocab_size=16)
