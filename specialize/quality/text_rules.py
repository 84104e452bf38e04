"""Rule-based filters for general text (web, books, encyclopedias): the "replay" data of continual pretraining.

The rules are Gopher's MassiveWeb quality and repetition filters (Rae et al. 2021, "Scaling Language
Models", appendix A) and C4's page filters (Raffel et al. 2020), with the thresholds datatrove ships in
``GopherQualityFilter``, ``GopherRepetitionFilter`` and ``C4QualityFilter``. Replay text must look like the
pretraining mix the model already knows, so these are the filters that mix was built with. Rules, in order
(the first that fires names the reason; cheap and unambiguous rules first):

- ``too_long``: more than ``max_bytes`` bytes (a dump, not a document) or more than ``max_words`` words
  (Gopher: 100,000)
- ``too_short``: fewer than ``min_words`` words (Gopher: 50); too little text to judge or to teach
- ``lorem_ipsum``: more than ``max_lorem_ipsum`` "lorem ipsum" (C4: any): template placeholder pages
- ``curly_braces``: more "{" per word than ``max_curly_brace_word_ratio`` (C4 drops any page with one; we
  tolerate a few so an encyclopedia page with a formula or two survives): code, JSON, CSS, templates
- ``bad_mean_word_length``: mean word length outside [``min_mean_word_length``, ``max_mean_word_length``]
  (Gopher: 3-10): gibberish, concatenated tokens, URLs and hashes, or one-letter junk
- ``symbol_ratio``: "#" or ellipses ("...", "…") per word above ``max_symbol_word_ratio`` (Gopher: 0.1 each):
  hashtag spam and teaser snippets
- ``bullet_lines``: more than ``max_bullet_lines_fraction`` of the lines start with a bullet (Gopher: 0.9):
  menus and navigation lists
- ``ellipsis_lines``: more than ``max_ellipsis_lines_fraction`` of the lines end with an ellipsis (Gopher: 0.3):
  truncated teasers ("Read more…")
- ``low_alpha_words``: fewer than ``min_alpha_words_fraction`` of the words hold a letter (Gopher: 0.8):
  tables of numbers, prices, symbol dumps
- ``few_stop_words``: fewer than ``min_stop_words`` of "the be to of and that have with" (Gopher: 2), only for
  ``stop_word_languages`` and unidentified (None) text: real English sentences use them, keyword lists do not
- ``repeated_paragraphs`` / ``repeated_lines``: the share of paragraphs / lines that repeat an earlier one
  exceeds ``max_duplicate_paragraph_fraction`` / ``max_duplicate_line_fraction`` (Gopher: 0.3), or the
  characters in those repeats exceed ``max_duplicate_paragraph_char_fraction`` /
  ``max_duplicate_line_char_fraction`` of the text (Gopher: 0.2). Paragraphs come first, as in datatrove,
  so a page of copied paragraphs is named for them
- ``repeated_ngrams``: the most frequent word 2/3/4-gram covers more than ``max_top_{n}gram_char_fraction``
  of the characters (Gopher: 0.20/0.18/0.16), or repeated 5..10-grams cover more than
  ``max_duplicate_{n}gram_char_fraction`` (Gopher: 0.15 down to 0.10): keyword spam, spun text
- ``boilerplate_lines``: more than ``max_boilerplate_line_fraction`` of the lines are C4's boilerplate (cookie
  and policy notices, "enable JavaScript" banners). C4 deletes such lines; a verdict cannot edit text, so we
  drop the page when they are a large part of it (a lone footer line is tolerated)
- ``few_sentences``: fewer than ``min_sentences`` sentences (C4: 3) counted the C4 way: only in lines that
  end in terminal punctuation (not an ellipsis), have ``min_words_per_line`` words (C4: 5) and are not
  boilerplate; menus, headline lists and link farms have none

Languages written without spaces (``NO_SPACE_LANGUAGES``: zh, ja, th, ...) have no whitespace words, so
word-based rules would misjudge every document. For them word counts become character counts
(``CHARS_PER_WORD`` characters stand for one word, for too_short/too_long and the symbol ratio), the alpha
rule counts letters among the non-space, non-punctuation characters, and mean word length, stop words,
n-grams and sentence counts are skipped; the line, paragraph, lorem ipsum, brace, bullet, ellipsis and
boilerplate rules apply to every language (per-word ratios use the character-based word count). Text with
no identified language (None) is judged as English.

Words are whitespace tokens with punctuation deleted (datatrove tokenizes with NLTK; a regex-free split is
what makes the rules cheap enough for every document of the corpus); a token that is all punctuation is no
word, but counts as a word without a letter in the alpha rule, as datatrove's punctuation tokens do. All
rules read the lower-cased text, so lines and n-grams repeat regardless of case.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate, filterfalse

import numpy as np

from specialize.quality.settings import from_section

NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu"})
# Chinese words average ~1.6 characters (segmented corpora), rounded up; Thai, Lao, Khmer and Burmese words
# are longer, so for them the character minimum is lenient, never harsher than the English word minimum.
CHARS_PER_WORD = 2
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list

# Deleted before splitting into words: "word," and "(word)" are the word, "don't" is "dont", and a token
# that is all punctuation ("-", "|", "•") is no word at all (datatrove's non-symbol words).
_ASCII_PUNCT = string.punctuation.encode()
_UNICODE_PUNCT = tuple("“”‘’«»„‚‹›…—–‐‑‒―·•‣▪◦●○■□►▶→←¡¿。、，！？；：「」『』（）【】《》〈〉")
# Gopher/datatrove count "•" and "-"; other list markers do the same job on today's web. En and em
# dashes are left out: novels in French, Spanish or Russian open every dialogue line with one.
_BULLETS = ("•", "-", "*", "‣", "▪", "◦", "●", "○", "■", "□", "▫", "►", "▸", "▶", "➢", "➤", "→", "·", "⁃", "✓", "✔", "◆", "◇")
_ELLIPSES = ("...", "…")
_LETTER = re.compile(r"[^\W\d_]")  # \w minus digits and underscore: the letters
# C4's policy substrings and javascript lines, narrowed to banners: we drop whole pages on their share, and
# an article about JavaScript or a privacy law must not count against itself. Matched on lower-cased text.
_BOILERPLATE = re.compile(
    r"terms of (?:use|service)|privacy policy|cookie (?:policy|settings|preferences|consent)"
    r"|uses? (?:of )?cookies|accept (?:all )?cookies"
    r"|javascript (?:is |must be |has been |needs to be )?(?:disabled|required|turned off|not (?:enabled|supported|available))"
    r"|(?:enable|turn on|activate|requires?|needs?) javascript|javascript (?:in|on) your browser"
)
_BOILERPLATE_HINTS = ("cookie", "javascript", "privacy policy", "terms of")  # one of these is in every match
# C4's terminal punctuation (. ? ! ") and datatrove's ('), plus closing quotes and the full stops of
# spaced scripts (Devanagari danda, Arabic question mark, Armenian, Ethiopic).
_TERMINAL = (".", "?", "!", '"', "'", "”", "’", "“", "»", "।", "॥", "؟", "։", "።")
_SENTENCE_END = re.compile(r"[.!?।॥؟։።]+[\"'”’“»)\]]*(?=\s|$)")
_CITATION_TAIL = re.compile(r"(?:\s*(?:\[\d*\]|\[edit\]|\[citation needed\]))+$")  # C4 strips these first

_TOP_NGRAMS = (2, 3, 4)
_DUPLICATE_NGRAMS = (5, 6, 7, 8, 9, 10)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the n-gram keys


@dataclass(frozen=True)
class TextFilterSettings:
    """Thresholds of the text rules; every one is set in the profile (see ``default_text_filter_section``)."""

    # size
    min_words: int
    max_words: int
    max_bytes: int
    # Gopher quality
    min_mean_word_length: float
    max_mean_word_length: float
    max_symbol_word_ratio: float
    max_bullet_lines_fraction: float
    max_ellipsis_lines_fraction: float
    min_alpha_words_fraction: float
    min_stop_words: int
    stop_word_languages: tuple[str, ...]
    # Gopher repetition
    max_duplicate_line_fraction: float
    max_duplicate_paragraph_fraction: float
    max_duplicate_line_char_fraction: float
    max_duplicate_paragraph_char_fraction: float
    max_top_2gram_char_fraction: float
    max_top_3gram_char_fraction: float
    max_top_4gram_char_fraction: float
    max_duplicate_5gram_char_fraction: float
    max_duplicate_6gram_char_fraction: float
    max_duplicate_7gram_char_fraction: float
    max_duplicate_8gram_char_fraction: float
    max_duplicate_9gram_char_fraction: float
    max_duplicate_10gram_char_fraction: float
    # C4
    max_lorem_ipsum: int
    max_curly_brace_word_ratio: float
    max_boilerplate_line_fraction: float
    min_sentences: int
    min_words_per_line: int

    @classmethod
    def from_profile(cls, section: dict, where: str = "profile filters.text") -> "TextFilterSettings":
        return from_section(cls, section, where)


def default_text_filter_section() -> dict:
    """Gopher / C4 thresholds as a profile section: the values the text profile YAML carries.

    Kept in code only as the reference the profile and the tests agree on; the pipeline reads the profile.
    """
    return {
        "min_words": 50,                    # Gopher
        "max_words": 100_000,               # Gopher
        "max_bytes": 4_194_304,             # 4 MiB, as the other profiles' max_file_bytes
        "min_mean_word_length": 3.0,        # Gopher
        "max_mean_word_length": 10.0,       # Gopher
        "max_symbol_word_ratio": 0.1,       # Gopher, "#" and ellipses separately
        "max_bullet_lines_fraction": 0.9,   # Gopher
        "max_ellipsis_lines_fraction": 0.3,  # Gopher
        "min_alpha_words_fraction": 0.8,    # Gopher
        "min_stop_words": 2,                # Gopher
        "stop_word_languages": ["en"],      # Gopher's list is English
        "max_duplicate_line_fraction": 0.3,            # Gopher
        "max_duplicate_paragraph_fraction": 0.3,       # Gopher
        "max_duplicate_line_char_fraction": 0.2,       # Gopher
        "max_duplicate_paragraph_char_fraction": 0.2,  # Gopher
        "max_top_2gram_char_fraction": 0.20,  # Gopher
        "max_top_3gram_char_fraction": 0.18,
        "max_top_4gram_char_fraction": 0.16,
        "max_duplicate_5gram_char_fraction": 0.15,  # Gopher
        "max_duplicate_6gram_char_fraction": 0.14,
        "max_duplicate_7gram_char_fraction": 0.13,
        "max_duplicate_8gram_char_fraction": 0.12,
        "max_duplicate_9gram_char_fraction": 0.11,
        "max_duplicate_10gram_char_fraction": 0.10,
        "max_lorem_ipsum": 0,                  # C4: any occurrence drops the page
        "max_curly_brace_word_ratio": 0.05,    # C4: 0 (any "{"); CSS/JS/JSON run 0.08-0.3, a LaTeX formula in 100 words ~0.04
        "max_boilerplate_line_fraction": 0.2,  # C4 deletes such lines; ours: page-level share
        "min_sentences": 3,                    # C4 (datatrove: 5)
        "min_words_per_line": 5,               # C4 (datatrove: 3)
    }


def _words(lower: str) -> list[str]:
    """Whitespace words with punctuation deleted (see ``_ASCII_PUNCT``).

    ``bytes.translate`` deletes the ASCII marks in one table pass (an ASCII byte is never part of a UTF-8
    multibyte character); ``str.translate`` with a deletion map falls back to a dict lookup per character
    on non-ASCII text, ten times slower. The few non-ASCII marks are replaced only when present.
    """
    stripped = lower.encode("utf-8", "surrogatepass").translate(None, _ASCII_PUNCT).decode("utf-8", "surrogatepass")
    if not stripped.isascii():
        for mark in _UNICODE_PUNCT:
            if mark in stripped:
                stripped = stripped.replace(mark, "")
    return stripped.split()


def _repeating(keys: np.ndarray) -> np.ndarray:
    """Indexes (ascending) of the keys that occur more than once; one sort when none does."""
    ordered = np.sort(keys)
    repeats = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.flatnonzero(np.isin(keys, repeats)) if repeats.size else np.zeros(0, dtype=np.int64)


class _Ngrams:
    """Word n-grams of one document as 64-bit keys, for counting in numpy instead of hashing tuples.

    A word's key is Python's string hash; an n-gram's key is the polynomial ``k[n](i) = k[n-1](i) * M +
    h(i + n - 1)`` (mod 2**64), built one n at a time. Distinct n-grams colliding is a 2**-64 event per pair;
    the rules only ever compare counts, so one collision in a corpus moves one share by one n-gram at most.
    """

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        self._keys = {1: self.hashes}
        self._ends: list[int] | None = None

    @property
    def ends(self) -> list[int]:
        """``ends[i]``: characters in the words before word i (built only when some n-gram repeats)."""
        if self._ends is None:
            self._ends = list(accumulate(map(len, self.words), initial=0))
        return self._ends

    def keys(self, n: int) -> np.ndarray:
        """Key of the n-gram starting at each position 0 .. words - n."""
        if n not in self._keys:
            shorter = self.keys(n - 1)
            self._keys[n] = shorter[:-1] * _MIX + self.hashes[n - 1:]
        return self._keys[n]

    def top_chars(self, n: int) -> int:
        """Characters (words joined by spaces, as datatrove) in all copies of the most frequent n-gram.

        An n-gram seen once is no repetition and scores 0; of n-grams tied on count, the first seen wins
        (datatrove's ``Counter.most_common``). Overlapping copies each count, as in datatrove, so "a a a a"
        can score more characters than the text has: the rule only asks whether it is too many.
        """
        if len(self.words) < n + 1:
            return 0
        keys = self.keys(n)
        ordered = np.sort(keys)
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        counts = np.diff(np.append(starts, ordered.size))
        best = int(counts.max())
        if best < 2:
            return 0
        top = ordered[starts[counts == best]]
        first = int(np.argmax(keys == top[0] if top.size == 1 else np.isin(keys, top)))
        return best * (sum(map(len, self.words[first:first + n])) + n - 1)

    def repeat_candidates(self, n: int) -> np.ndarray:
        """Positions whose n-gram occurs more than once, ascending."""
        if len(self.words) < n + 1:
            return np.zeros(0, dtype=np.int64)
        return _repeating(self.keys(n))

    def duplicate_chars(self, n: int, candidates: np.ndarray | None = None) -> int:
        """Characters (words joined without spaces, as datatrove) of n-grams repeating an earlier one.

        datatrove's greedy scan: walk the positions; an n-gram already seen counts and the scan jumps past
        it, so overlapping copies ("a a a a ...") are not counted twice. A position whose n-gram occurs once
        can never count, so only the positions whose n-gram repeats are walked, which gives the same total
        in time proportional to the repetition. ``candidates`` (ascending) narrows the walk further: any
        superset of the repeating positions, e.g. those whose 5-gram repeats when n >= 5.
        """
        if candidates is None:
            candidates = self.repeat_candidates(n)
        candidates = candidates[candidates <= len(self.words) - n]
        if candidates.size < 2:
            return 0
        keys = self.keys(n)[candidates]
        repeated = _repeating(keys)
        if not repeated.size:
            return 0
        ends = self.ends
        seen: set[int] = set()
        chars = free = 0
        for i, key in zip(candidates[repeated].tolist(), keys[repeated].tolist()):
            if i < free:
                continue
            if key in seen:
                chars += ends[i + n] - ends[i]
                free = i + n
            else:
                seen.add(key)
        return chars


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters in all copies of the most frequent word n-gram (Gopher's top n-gram rule; see ``_Ngrams``)."""
    return _Ngrams(words).top_chars(n)


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters of word n-grams that repeat an earlier one (Gopher's duplicate n-gram rule; see ``_Ngrams``)."""
    return _Ngrams(words).duplicate_chars(n)


def _ngram_verdict(words: list[str], text_chars: int, settings: TextFilterSettings) -> tuple[str, str] | None:
    grams = _Ngrams(words)
    for n in _TOP_NGRAMS:
        limit = getattr(settings, f"max_top_{n}gram_char_fraction")
        share = grams.top_chars(n) / text_chars
        if share > limit:
            return "repeated_ngrams", f"most frequent {n}-gram covers {share:.2f} of the characters > {limit:g}"
    # Every repeated n-gram (n >= 5) starts with a repeated 5-gram: only those positions are walked, and
    # prose, where no 5-gram repeats, costs one sort.
    candidates = grams.repeat_candidates(_DUPLICATE_NGRAMS[0])
    if not candidates.size:
        return None
    for n in _DUPLICATE_NGRAMS:
        limit = getattr(settings, f"max_duplicate_{n}gram_char_fraction")
        share = grams.duplicate_chars(n, candidates) / text_chars
        if share > limit:
            return "repeated_ngrams", f"repeated {n}-grams cover {share:.2f} of the characters > {limit:g}"
    return None


def _repetition_verdict(lines: list[str], text_chars: int, settings: TextFilterSettings) -> tuple[str, str] | None:
    """Repeated paragraphs, then repeated lines (``lines``: stripped, blank ones kept as paragraph breaks)."""
    filled = [line for line in lines if line]
    if not filled:
        return None
    counts = Counter(filled)
    if len(counts) == len(filled):  # a repeated paragraph repeats its lines: nothing to find
        return None
    paragraphs, current = [], []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    for kind, items, item_counts in (("paragraph", paragraphs, Counter(paragraphs)), ("line", filled, counts)):
        repeats = len(items) - len(item_counts)
        share = repeats / len(items)
        limit = getattr(settings, f"max_duplicate_{kind}_fraction")
        if share > limit:
            return f"repeated_{kind}s", f"{share:.2f} of the {kind}s repeat an earlier one > {limit:g}"
        chars = sum((count - 1) * len(item) for item, count in item_counts.items() if count > 1)
        share = chars / text_chars
        limit = getattr(settings, f"max_duplicate_{kind}_char_fraction")
        if share > limit:
            return f"repeated_{kind}s", f"repeated {kind}s hold {share:.2f} of the characters > {limit:g}"
    return None


def _sentences(lines: list[str], settings: TextFilterSettings, enough: int, boilerplate: bool) -> int:
    """C4's sentence count (stops at ``enough``): sentences in lines C4 would keep.

    ``boilerplate``: whether the text has a boilerplate hint at all; without one no line needs the regex.
    """
    count = 0
    for line in lines:
        if not line.endswith(_TERMINAL):
            line = _CITATION_TAIL.sub("", line)
            if not line.endswith(_TERMINAL):
                continue
        if line.endswith(_ELLIPSES) or len(line.split()) < settings.min_words_per_line or (boilerplate and _BOILERPLATE.search(line)):
            continue
        count += max(1, len(_SENTENCE_END.findall(line)))
        if count >= enough:
            break
    return count


def _letter_share(text: str) -> float:
    """Letters (and combining marks: Thai vowels, Devanagari signs) among non-space, non-punctuation characters."""
    letters = other = 0
    for char, count in Counter(text).items():
        kind = unicodedata.category(char)[0]
        if kind in "LM":
            letters += count
        elif kind in "NS":
            other += count
    return letters / (letters + other) if letters + other else 0.0


def text_verdict(text: str, language: str | None, settings: TextFilterSettings) -> tuple[str, str] | None:
    """``(reason, detail)`` when the document should be dropped, else None (first rule that fires names the reason).

    ``language`` is the ISO 639-1 code fastText lid.176 gave (None: unidentified, judged as English).
    """
    s = settings
    if len(text) * 4 > s.max_bytes:  # a character is at most 4 bytes: encode only when it could matter
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > s.max_bytes:
            return "too_long", f"{size} bytes > {s.max_bytes}"
    lower = text.lower()
    text_chars = max(1, len(lower))
    no_space = language in NO_SPACE_LANGUAGES
    tokens = lower.split()
    if no_space:
        chars = sum(map(len, tokens))
        n_words = chars / CHARS_PER_WORD
        if n_words > s.max_words:
            return "too_long", f"{chars} characters > {s.max_words * CHARS_PER_WORD} ({language}: {CHARS_PER_WORD} per word)"
        if n_words < s.min_words:
            return "too_short", f"{chars} characters < {s.min_words * CHARS_PER_WORD} ({language}: {CHARS_PER_WORD} per word)"
        words: list[str] = []
    else:
        words = _words(lower)
        n_words = len(words)
        if n_words > s.max_words:
            return "too_long", f"{n_words} words > {s.max_words}"
        if n_words < s.min_words or not n_words:
            return "too_short", f"{n_words} words < {s.min_words}"

    lorem = lower.count("lorem ipsum")
    if lorem > s.max_lorem_ipsum:
        return "lorem_ipsum", f"'lorem ipsum' {lorem} times > {s.max_lorem_ipsum}"
    lines = [line.strip() for line in lower.splitlines()]
    filled = [line for line in lines if line] or [""]
    per_word = max(n_words, 1)
    braces = lower.count("{") / per_word
    if braces > s.max_curly_brace_word_ratio:
        return "curly_braces", f"{braces:.3f} '{{' per word > {s.max_curly_brace_word_ratio:g}"

    if not no_space:
        mean = len("".join(words)) / n_words
        if not s.min_mean_word_length <= mean <= s.max_mean_word_length:
            return "bad_mean_word_length", (f"mean word length {mean:.1f} outside "
                                            f"[{s.min_mean_word_length:g}, {s.max_mean_word_length:g}]")
    hashes = lower.count("#")
    ellipses = lower.count("...") + lower.count("…") - lower.count("……")  # "……" is one (Chinese) ellipsis
    for symbol, count in (("'#'", hashes), ("ellipses", ellipses)):
        ratio = count / per_word
        if ratio > s.max_symbol_word_ratio:
            return "symbol_ratio", f"{ratio:.2f} {symbol} per word > {s.max_symbol_word_ratio:g}"
    bullets = sum(1 for line in filled if line.startswith(_BULLETS)) / len(filled)
    if bullets > s.max_bullet_lines_fraction:
        return "bullet_lines", f"{bullets:.2f} of the lines start with a bullet > {s.max_bullet_lines_fraction:g}"
    trailing = sum(1 for line in filled if line.endswith(_ELLIPSES)) / len(filled)
    if trailing > s.max_ellipsis_lines_fraction:
        return "ellipsis_lines", f"{trailing:.2f} of the lines end with an ellipsis > {s.max_ellipsis_lines_fraction:g}"
    if no_space:
        alpha = _letter_share(lower)
        if alpha < s.min_alpha_words_fraction:
            return "low_alpha_words", f"{alpha:.2f} of the non-punctuation characters are letters < {s.min_alpha_words_fraction:g}"
    else:
        # tokens that were all punctuation, and words with no letter (numbers, prices, codes)
        no_letter = len(tokens) - n_words + sum(1 for w in filterfalse(str.isalpha, words) if not _LETTER.search(w))
        alpha = 1 - no_letter / len(tokens)
        if alpha < s.min_alpha_words_fraction:
            return "low_alpha_words", f"{alpha:.2f} of the words have a letter < {s.min_alpha_words_fraction:g}"
        if language is None or language in s.stop_word_languages:
            stops = sum(map(STOP_WORDS.__contains__, words))
            if stops < s.min_stop_words:
                return "few_stop_words", f"{stops} stop words (the, and, of...) < {s.min_stop_words}"

    verdict = _repetition_verdict(lines, text_chars, s)
    if verdict:
        return verdict
    if not no_space:
        verdict = _ngram_verdict(words, text_chars, s)
        if verdict:
            return verdict

    boilerplate = any(hint in lower for hint in _BOILERPLATE_HINTS)
    if boilerplate:
        share = sum(1 for line in filled if _BOILERPLATE.search(line)) / len(filled)
        if share > s.max_boilerplate_line_fraction:
            return "boilerplate_lines", (f"{share:.2f} of the lines are cookie/policy/javascript notices "
                                         f"> {s.max_boilerplate_line_fraction:g}")
    if not no_space and s.min_sentences > 0:
        sentences = _sentences(filled, s, s.min_sentences, boilerplate)
        if sentences < s.min_sentences:
            return "few_sentences", f"{sentences} sentences in full lines < {s.min_sentences}"
    return None
