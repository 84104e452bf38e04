"""A trainable document-quality scorer: logistic regression over hashed word and punctuation n-grams.

scikit-learn does the work: ``HashingVectorizer`` (stateless, so nothing but its parameters needs
saving, and murmurhash3 gives the same features on every machine and version) and
``LogisticRegression``. The saved model is a plain ``.npz`` of the non-zero weights, the bias and the
vectorizer parameters as JSON: no pickle, so loading a model file can never run code.

Score = P(positive | text) in [0, 1]. ``--min-quality X`` drops documents below X.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specialize.corpus import outputs

FORMAT = "specialize-quality-model-v1"
VECTORIZER = {
    "n_features": 1 << 20,
    "ngram_range": [1, 2],
    "token_pattern": r"(?u)\b\w+\b|[^\w\s]",  # words and single punctuation marks: code style shows in both
    "lowercase": False,
    "alternate_sign": False,
    "norm": "l2",
}
MAX_CHARS = 100_000  # score the first 100k characters: the style of a file shows early, cost stays bounded


def _vectorizer(params: dict):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=int(params["n_features"]), ngram_range=tuple(params["ngram_range"]),
        token_pattern=params["token_pattern"], lowercase=bool(params["lowercase"]),
        alternate_sign=bool(params["alternate_sign"]), norm=params["norm"], dtype=np.float32)


@dataclass
class TrainReport:
    positives: int
    negatives: int
    validation_accuracy: float | None
    validation_auc: float | None


class QualityModel:
    """Weights over hashed features; ``score(texts)`` gives P(good) per text."""

    def __init__(self, weights: np.ndarray, bias: float, params: dict | None = None, meta: dict | None = None):
        self.params = dict(params or VECTORIZER)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = float(bias)
        self.meta = dict(meta or {})
        self._vec = _vectorizer(self.params)

    def score(self, texts: list[str]) -> np.ndarray:
        features = self._vec.transform([t[:MAX_CHARS] for t in texts])
        logits = features @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def save(self, path: str | Path) -> None:
        nonzero = np.flatnonzero(self.weights)
        header = json.dumps({"format": FORMAT, "vectorizer": self.params, "meta": self.meta})
        with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
            np.savez_compressed(handle, header=np.array(header), indices=nonzero.astype(np.int64),
                                values=self.weights[nonzero], bias=np.array(self.bias))

    @classmethod
    def load(cls, path: str | Path) -> "QualityModel":
        """From a local path or any URL Beam's filesystems open (gs://, s3://: each worker reads it)."""
        try:
            source = path
            if outputs.is_remote(str(path)):
                source = io.BytesIO(outputs.read_bytes(str(path)))
            with np.load(source, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("format") != FORMAT:
                    raise ValueError(f"format {header.get('format')!r}, expected {FORMAT}")
                params = header["vectorizer"]
                weights = np.zeros(int(params["n_features"]), dtype=np.float32)
                weights[data["indices"]] = data["values"]
                return cls(weights, float(data["bias"]), params, header.get("meta"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such quality model (train one with `specialize quality train`)") from None
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: not a specialize quality model ({err})") from None


def train_quality_model(positives: list[str], negatives: list[str], *, c: float = 4.0,
                        validation_fraction: float = 0.2, seed: int = 0) -> tuple[QualityModel, TrainReport]:
    """Fit on labelled texts; report accuracy/AUC on a held-out split, then refit on everything."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError(f"need at least 2 positive and 2 negative examples, got {len(positives)} and {len(negatives)}")
    texts = [t[:MAX_CHARS] for t in positives + negatives]
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    vec = _vectorizer(VECTORIZER)
    features = vec.transform(texts)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    held = order[: int(len(texts) * validation_fraction)]
    fit = order[len(held):]
    accuracy = auc = None
    if len(held) >= 4 and len(set(labels[held])) == 2 and len(set(labels[fit])) == 2:
        probe = LogisticRegression(C=c, solver="liblinear", max_iter=1000, class_weight="balanced").fit(features[fit], labels[fit])
        probabilities = probe.predict_proba(features[held])[:, 1]
        accuracy = float(np.mean((probabilities >= 0.5) == labels[held]))
        auc = float(roc_auc_score(labels[held], probabilities))
    final = LogisticRegression(C=c, solver="liblinear", max_iter=1000, class_weight="balanced").fit(features, labels)
    import sklearn

    meta = {"positives": len(positives), "negatives": len(negatives), "C": c,
            "validation_accuracy": accuracy, "validation_auc": auc, "sklearn": sklearn.__version__}
    model = QualityModel(final.coef_[0], final.intercept_[0], VECTORIZER, meta)
    return model, TrainReport(len(positives), len(negatives), accuracy, auc)
