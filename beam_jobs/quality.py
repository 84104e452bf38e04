"""Quality stages: rule filters, secrets, the quality model and up-sampling, each ``docs, dropped = docs | Stage``.

The rules themselves are plain functions in ``specialize/quality/``; these transforms only route
documents and rejections through the shared mechanism of ``beam_jobs.stages``.
"""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam

from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED, SAMPLE_CHARS, DocumentStage, FilterStage
from specialize.corpus.document import Document, Rejection
from specialize.quality.code_rules import CodeFilterSettings, code_verdict
from specialize.quality.math_rules import MathFilterSettings, math_verdict
from specialize.quality.secrets import redact_secrets, secret_verdict
from specialize.quality.upsample import copies_of

RULES_STAGE = "rules"
SECRETS_STAGE = "secrets"
MODEL_STAGE = "quality_model"
UPSAMPLE_STAGE = "upsample"


def rule_filter(domain: str, section: dict, where: str) -> FilterStage:
    """The domain's rule filter, thresholds from the profile section ``filters.<domain>``."""
    if domain == "code":
        settings = CodeFilterSettings.from_profile(section, where)
        return FilterStage(RULES_STAGE, lambda d: code_verdict(d.text, d.language, settings), "CodeRules")
    if domain == "math":
        settings = MathFilterSettings.from_profile(section, where)
        return FilterStage(RULES_STAGE, lambda d: math_verdict(d.text, settings), "MathRules")
    raise ValueError(f"no rule filter for domain {domain!r} (code or math)")


def _drop_secrets(document: Document) -> Document | Rejection:
    verdict = secret_verdict(document.text)
    if verdict is None:
        return document
    # The sample shown by `corpus inspect` is redacted: the build output must not carry the secret.
    return Rejection(SECRETS_STAGE, verdict[0], document.source, document.num_bytes, verdict[1],
                     redact_secrets(document.text[: 4 * SAMPLE_CHARS])[:SAMPLE_CHARS])


class SecretFilter(DocumentStage):
    """Drop files that contain a private key, an API token or a password literal (``secrets/secret_<kind>``)."""

    def __init__(self):
        super().__init__(_drop_secrets, "Secrets")


class _ScoreFn(beam.DoFn):
    def __init__(self, model_path: str, min_quality: float | None):
        self._path, self._min = model_path, min_quality
        self._model = None

    def setup(self):
        from specialize.quality.model import QualityModel

        self._model = QualityModel.load(self._path)

    def process(self, document: Document):
        score = float(self._model.score([document.text])[0])
        document = replace(document, meta={**document.meta, "quality": score})  # never mutate an input element
        if self._min is not None and score < self._min:
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
                MODEL_STAGE, "low_quality_score", document.source, document.num_bytes,
                f"score {score:.4f} < {self._min:g}", document.text[:SAMPLE_CHARS]))
        else:
            yield document


class QualityScore(beam.PTransform):
    """Score every document with a trained model (stored as the shard's ``quality`` column); drop below ``min_quality``."""

    def __init__(self, model_path: str, min_quality: float | None = None):
        super().__init__()
        from specialize.quality.model import QualityModel

        QualityModel.load(model_path)  # fail before the pipeline starts, naming the file
        self._path, self._min = model_path, min_quality

    def expand(self, documents):
        outputs = documents | beam.ParDo(_ScoreFn(self._path, self._min)).with_outputs(REJECTED, main=KEPT)
        return outputs[KEPT], outputs[REJECTED]


class _UpsampleFn(beam.DoFn):
    def __init__(self, weights: dict[str, float], seed: int):
        self._weights, self._seed = weights, seed

    def process(self, document: Document):
        weight = self._weights.get(document.input_name, 1.0)
        copies = copies_of(document, weight, self._seed) if weight != 1.0 else [document]
        name = document.input_name or "(unnamed)"
        yield beam.pvalue.TaggedOutput("stats", {name: {"weight": 0.0, "documents_in": 1, "documents_out": len(copies),
                                                        "bytes_out": document.num_bytes * len(copies)}})
        if not copies:
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
                UPSAMPLE_STAGE, "sampled_out", document.source, document.num_bytes,
                f"input weight {weight:g}", document.text[:SAMPLE_CHARS]))
        yield from copies


class Upsample(beam.PTransform):
    """Repeat or subsample documents per input (``--source-weight INPUT=W``); counts per input in the stats."""

    def __init__(self, weights: dict[str, float], stats_dir: str | None = None, seed: int = 0):
        super().__init__()
        self._weights, self._stats_dir, self._seed = dict(weights), stats_dir, seed

    def expand(self, documents):
        outputs = documents | beam.ParDo(_UpsampleFn(self._weights, self._seed)).with_outputs(
            REJECTED, "stats", main=KEPT)
        if self._stats_dir is not None:
            weights = self._weights

            def finalize(stats: dict) -> dict:
                for name, figures in stats.items():
                    figures["weight"] = weights.get(name, 1.0)
                return {"weights": weights, "inputs": stats}

            outputs["stats"] | WriteStageStats(self._stats_dir, UPSAMPLE_STAGE, finalize=finalize)
        return outputs[KEPT], outputs[REJECTED]
