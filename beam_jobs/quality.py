"""Quality stages: rule filters, secrets, the quality model and up-sampling, each ``docs, dropped = docs | Stage``.

The rules themselves are plain functions in ``specialize/quality/``; these transforms only route
documents and rejections through the shared mechanism of ``beam_jobs.stages``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import apache_beam as beam

from beam_jobs.corpus_wide import CorpusWideStage, keyed_rejection
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED, SAMPLE_CHARS, DocumentStage, FilterStage
from specialize.corpus.document import Document, DocumentKey, Rejection
from specialize.quality.code_rules import CodeFilterSettings, code_verdict
from specialize.quality.math_rules import MathFilterSettings, math_verdict
from specialize.quality.secrets import redact_secrets, secret_verdict
from specialize.quality.upsample import copies_of

LANGUAGE_STAGE = "language"
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
    if domain == "text":
        from specialize.quality.text_rules import TextFilterSettings, text_verdict

        settings = TextFilterSettings.from_profile(section, where)
        # "und": no language stage ran (--no-language-filter); the rules then judge the text as English would be
        return FilterStage(RULES_STAGE, lambda d: text_verdict(d.text, None if d.language == "und" else d.language, settings),
                           "TextRules")
    raise ValueError(f"no rule filter for domain {domain!r} (code, math or text)")


class _LanguageFn(beam.DoFn):
    def __init__(self, settings):
        self._settings = settings
        self._identifier = None

    def setup(self):
        from specialize.quality.language_id import LanguageIdentifier

        self._identifier = LanguageIdentifier(self._settings.model, self._settings.max_chars)

    def process(self, document: Document):
        from specialize.quality.language_id import language_verdict

        language, score = self._identifier.identify(document.text)
        verdict = language_verdict(language, score, self._settings)
        if verdict is not None:
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(LANGUAGE_STAGE, verdict[0], document.source,
                                                               document.num_bytes, verdict[1], document.text[:SAMPLE_CHARS]))
        else:  # the shard's language column says which language it is (never mutate an input element)
            yield replace(document, language=language, meta={**document.meta, "language_score": score})


class LanguageFilter(beam.PTransform):
    """Identify each document's language (fastText lid.176) and keep the wanted ones (``language/...``)."""

    def __init__(self, settings):
        super().__init__()
        from specialize.quality.language_id import LanguageIdentifier

        LanguageIdentifier(settings.model, settings.max_chars)  # fail before the pipeline starts, naming the file
        self._settings = settings

    def expand(self, documents):
        outputs = documents | beam.ParDo(_LanguageFn(self._settings)).with_outputs(REJECTED, main=KEPT)
        return outputs[KEPT], outputs[REJECTED]


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

    def process(self, key: DocumentKey):
        weight = self._weights.get(key.input_name, 1.0)
        copies = copies_of(key, weight, self._seed) if weight != 1.0 else [key]
        name = key.input_name or "(unnamed)"
        yield beam.pvalue.TaggedOutput("stats", {name: {"weight": 0.0, "documents_in": 1, "documents_out": len(copies),
                                                        "bytes_out": key.num_bytes * len(copies)}})
        if not copies:
            yield keyed_rejection(key, UPSAMPLE_STAGE, "sampled_out", f"input weight {weight:g}")
        yield from copies


class Upsample(CorpusWideStage):
    """Repeat or subsample documents per input (``--source-weight INPUT=W``); counts per input in the stats.
    Decided on keys alone: a copy is a key with a source of its own, written from the one text read."""

    def __init__(self, weights: dict[str, float], stats_dir: str | None = None, seed: int = 0):
        super().__init__()
        self._weights, self._stats_dir, self._seed = dict(weights), stats_dir, seed

    def decide(self, keys, signals):
        outputs = keys | beam.ParDo(_UpsampleFn(self._weights, self._seed)).with_outputs(
            REJECTED, "stats", main=KEPT)
        if self._stats_dir is not None:
            weights = self._weights

            def finalize(stats: dict) -> dict:
                for name, figures in stats.items():
                    figures["weight"] = weights.get(name, 1.0)
                return {"weights": weights, "inputs": stats}

            outputs["stats"] | WriteStageStats(self._stats_dir, UPSAMPLE_STAGE, finalize=finalize)
        return outputs[KEPT], outputs[REJECTED]


# ---------------------------------------------------------------------------------------------
# The quality stages of a corpus build, in order, from the profile and the command line


@dataclass
class QualityConfig:
    """Command-line switches of the quality stages; thresholds come from the profile.

    ``None`` means "as the profile says". Recorded in the manifest's settings with the rest of the build.
    """

    filters: bool = True
    language_filter: bool = True  # where the profile has a language_id: section (text)
    languages: list[str] | None = None  # ISO codes to keep; None: the profile's list
    secrets: bool = True
    exact_dedup: bool = True
    near_dedup: bool = True
    near_dedup_settings: dict = field(default_factory=dict)  # overrides of the profile's near_dedup: keys
    decontaminate: list[str] | None = None  # NAME or NAME=PATH; None: the profile's list
    decontaminate_ngram: int | None = None
    quality_model: str | None = None
    min_quality: float | None = None
    source_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def off(cls) -> "QualityConfig":
        """Every quality stage off (`--no-quality`): the corpus is exactly what the readers produced."""
        return cls(filters=False, language_filter=False, secrets=False, exact_dedup=False, near_dedup=False, decontaminate=[])

    def judges_text(self) -> bool:
        """Whether a stage does per-document work in Python on the first read (filters, language id,
        secrets, MinHash, the n-gram check, a quality model): the work more local processes share.
        Without it the build's work is tokenization, whose threads already use every core."""
        return bool(self.filters or self.language_filter or self.secrets or self.near_dedup
                    or self.decontaminate != [] or self.quality_model)


def _section(profile, name: str, where: str) -> dict:
    section = profile.section(name)
    if not isinstance(section, dict):
        raise ValueError(f"{where}: `{name}:` must be a mapping")
    return section


def quality_stages(config: QualityConfig, profile, stats_dir: str, profile_name: str = "profile",
                   local_runner: bool = False, spill_dir: str | None = None) -> list[tuple[str, beam.PTransform]]:
    """``[(label, stage)]`` in build order: language -> rules -> secrets -> quality model -> exact dedup ->
    near dedup -> decontamination -> up-sampling. Every stage maps documents to ``(kept, rejected)``.

    Built (and validated: profile keys, model file, benchmark files) before the pipeline starts, so a
    typo fails in a second with the file and key named, not after an hour of reading input.
    ``spill_dir`` (local runners): a local directory where dedup's packed signals wait for their search.
    """
    from beam_jobs.decontam import Decontaminate, build_index
    from beam_jobs.dedup import ExactDedup, NearDedup, NearDedupSettings

    domain = profile.domain
    stages: list[tuple[str, beam.PTransform]] = []
    language = _section(profile, "language_id", profile_name)
    if config.languages is not None and not language:
        raise ValueError(f"--languages needs a profile with a language_id: section ({profile_name} has none; the text profile has)")
    if config.language_filter and language:
        from specialize.quality.language_id import LanguageSettings

        settings = LanguageSettings.from_profile(language, f"{profile_name} language_id:", config.languages)
        stages.append(("LanguageFilter", LanguageFilter(settings)))
    if config.filters:
        stages.append(("RuleFilter", rule_filter(domain, _section(profile, "filters", profile_name),
                                                 f"{profile_name} filters:")))
    if config.secrets and domain == "code" and profile.raw.get("secrets", True):
        stages.append(("SecretFilter", SecretFilter()))
    if config.quality_model:
        stages.append(("QualityScore", QualityScore(config.quality_model, config.min_quality)))
    elif config.min_quality is not None:
        raise ValueError("--min-quality needs --quality-model MODEL (train one with `specialize quality train`)")
    dedup = _section(profile, "dedup", profile_name)
    if config.exact_dedup and dedup.get("exact", True):
        stages.append(("ExactDedup", ExactDedup(in_one_place=local_runner, spill_dir=spill_dir)))
    if config.near_dedup and dedup.get("near", True):
        raw = {**(dedup.get("near_dedup") or {}), **config.near_dedup_settings}
        try:
            settings = NearDedupSettings.from_dict(raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{profile_name} dedup.near_dedup / --near-dedup: {err}") from None
        stages.append(("NearDedup", NearDedup(settings, stats_dir, in_one_place=settings.in_one_place(local_runner),
                                              spill_dir=spill_dir)))
    decontam = _section(profile, "decontamination", profile_name)
    specs = list(decontam.get("benchmarks") or []) if config.decontaminate is None else list(config.decontaminate)
    if specs:
        n = int(config.decontaminate_ngram or decontam.get("ngram", 10))
        min_shared = int(decontam.get("min_shared_ngrams", 1))
        stages.append(("Decontaminate", Decontaminate(build_index(specs, n, min_shared), stats_dir)))
    if config.source_weights:
        stages.append(("Upsample", Upsample(config.source_weights, stats_dir)))
    flow = _Flow(stats_dir, len(stages))
    return [(label, _Counted(label, stage, flow)) for label, stage in stages]


class _Flow:
    """Collects each stage's kept-document counts while the pipeline is built; the last stage writes
    them all as ``_stats/stage-flow.json`` (documents and bytes after every stage, in order)."""

    def __init__(self, stats_dir: str, count: int):
        self.stats_dir, self.count, self.parts = stats_dir, count, []


def _flow_entry(document: Document, position: int, label: str) -> dict:
    return {f"{position:02d}_{label}": {"documents_kept": 1, "bytes_kept": document.num_bytes}}


class _Counted(beam.PTransform):
    """A stage whose kept output is also counted into the build's flow table."""

    def __init__(self, label: str, stage: beam.PTransform, flow: _Flow):
        super().__init__()
        self._label, self._stage, self._flow = label, stage, flow

    @property
    def corpus_wide(self) -> bool:
        """Decided on keys (``beam_jobs/corpus_wide.py``) rather than filtered on texts."""
        return getattr(self._stage, "corpus_wide", False)

    def measuring(self) -> beam.PTransform:
        from beam_jobs.corpus_wide import Measure

        return Measure(self._stage)

    def expand(self, documents):
        kept, rejected = documents | self._label >> self._stage
        flow = self._flow
        position = len(flow.parts) + 1
        flow.parts.append(kept | f"Count{self._label}" >> beam.Map(_flow_entry, position, self._label))
        if len(flow.parts) == flow.count:
            tuple(flow.parts) | "FlattenFlow" >> beam.Flatten() | "Flow" >> WriteStageStats(flow.stats_dir, "flow")
        return kept, rejected
