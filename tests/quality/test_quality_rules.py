"""Rule filters, secrets and settings, one planted input per reason."""

from __future__ import annotations

import random

import numpy as np
import pytest

from specialize.quality.code_rules import CodeFilterSettings, code_verdict, data_fraction
from specialize.quality.math_rules import MathFilterSettings, math_score, math_verdict
from specialize.quality.secrets import find_secret, redact_secrets
from tests.quality.planted import CODE_FILTERS, MATH_FILTERS

CODE = CodeFilterSettings.from_profile(CODE_FILTERS)
MATH = MathFilterSettings.from_profile(MATH_FILTERS)
GOOD = "def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n\n\nprint(add(1, 2))\n"


def _reason(text, language="python", settings=CODE):
    verdict = code_verdict(text, language, settings)
    return verdict and verdict[0]


def test_code_rules_keep_ordinary_code_and_name_each_reason():
    assert _reason(GOOD) is None
    allow = CodeFilterSettings.from_profile({**CODE_FILTERS, "languages": ["python"]})
    assert _reason(GOOD, "javascript", allow) == "language_not_allowed"
    assert _reason(GOOD, "python", allow) is None
    small = CodeFilterSettings.from_profile({**CODE_FILTERS, "max_bytes": 40})
    assert _reason(GOOD, settings=small) == "too_long"
    assert _reason("  x=1  \n") == "too_short"
    assert _reason("// This file is auto-generated, do not edit.\n" + GOOD) == "auto_generated"
    assert _reason(GOOD + "# " + "word " * 300 + "\n") == "long_lines"
    assert _reason("a=1;" * 400) == "minified"
    assert _reason(("x = " + "f(a) + " * 20 + "1\n") * 10) == "long_mean_line"
    assert _reason(GOOD + "#" + "\n#".join(["+-+-+-+-+ | | | |"] * 100)) == "low_alphanumeric"
    table = ",\n".join(", ".join(str(i * 31 + j) for j in range(15)) for i in range(200))
    assert _reason(GOOD + "T = [\n" + table + "]\n") == "data_like"
    assert _reason(GOOD + "K = '" + "QUJD" * 400 + "'\n") == "minified"  # one 1600-char line of base64
    b64 = "\n".join("    '" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFy" + "'" for _ in range(40))
    assert _reason(GOOD + "K = (\n" + b64 + "\n)\n") == "data_like"


def _data_fraction_by_bytes(text: str) -> float:
    """The rule as written, one byte at a time: the reference for the vectorised ``data_fraction``."""
    data = text.encode("utf-8")
    marked = [False] * len(data)

    def runs(accept):
        start = None
        for i, byte in enumerate(list(data) + [None]):
            if byte is not None and accept(chr(byte)):
                start = i if start is None else start
            elif start is not None:
                yield start, i
                start = None

    def mark(start, end):
        marked[start:end] = [True] * (end - start)

    for start, end in runs(lambda c: c in "0123456789abcdefABCDEF"):
        if end - start >= 32:
            mark(start, end)
    base64 = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/=")
    for start, end in runs(lambda c: c in base64):
        if end - start >= 64:
            mark(start, end)
    for start, end in runs(lambda c: c in "0123456789abcdefABCDEFxX.,;+- \t\n"):
        numbers = sum(1 for i in range(start, end) if chr(data[i]).isdigit() and (i == 0 or not chr(data[i - 1]).isdigit()))
        if numbers >= 8:
            mark(start, end)
    return sum(marked) / len(data) if data else 0.0


def test_data_fraction_equals_its_byte_by_byte_definition_on_overlapping_runs():
    rng = random.Random(3)
    pieces = ["0x1f, 0x20, 0x21, ", "deadbeef" * 5, "QUJD" * 20, "12, 34, 56, 78, 90, 11, 22, 33, 44", "word ", "é", "\n", "+/="]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert data_fraction(np.frombuffer(text.encode(), dtype=np.uint8)) == pytest.approx(_data_fraction_by_bytes(text)), text
    table = "data = [" + ", ".join(str(i * 37 % 1000) for i in range(40)) + "]\n"
    assert data_fraction(np.frombuffer(table.encode(), dtype=np.uint8)) > 0.9


def test_auto_generated_marker_only_counts_in_the_header_lines():
    late = GOOD * 20 + "# auto-generated below\n"
    assert _reason(late) is None
    header = CodeFilterSettings.from_profile({**CODE_FILTERS, "header_lines": 1})
    assert _reason("x = 1  # fine\n# do not edit\n" + GOOD, settings=header) is None
    assert _reason("# do not edit\n" + GOOD, settings=header) == "auto_generated"
    assert _reason("# do not edit: " + "x" * 60, settings=header) == "auto_generated"  # one line, no newline


def test_settings_errors_name_the_key():
    with pytest.raises(ValueError, match=r"missing key\(s\) \['min_chars'\]"):
        CodeFilterSettings.from_profile({k: v for k, v in CODE_FILTERS.items() if k != "min_chars"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_line'\]"):
        CodeFilterSettings.from_profile({**CODE_FILTERS, "max_line": 3}, "code.yaml filters.code")
    with pytest.raises(ValueError, match="code.yaml filters.code: min_chars='many'"):
        CodeFilterSettings.from_profile({**CODE_FILTERS, "min_chars": "many"}, "code.yaml filters.code")


def test_math_score_and_rules():
    worked = ("Solve $3x + 5 = 20$. Subtract 5 from both sides to get $3x = 15$, then divide by 3: "
              "$x = \\frac{15}{3} = 5$. Check: $3 \\cdot 5 + 5 = 20$. The answer is 5.")
    prose = "The weather was pleasant and we walked along the river talking about books and films for hours " * 2
    assert math_score(worked) > 0.5 > math_score(prose)
    assert math_verdict(worked, MATH) is None
    assert math_verdict(prose, MATH)[0] == "low_math_score"
    assert math_verdict("x = 1", MATH)[0] == "too_short"


def test_secrets_found_and_placeholders_left_alone():
    assert find_secret("key = 'AKIAQ3EGRZ7XW5NYPL2M'")[0] == "aws_access_key"
    assert find_secret("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")[0] == "private_key"
    assert find_secret("x = 1\nSLACK = 'xoxb-1234567890-abcdefghij'")[0] == "slack_token"
    assert find_secret('config = {"password": "s3cr3t-Pa55!"}') == ("password_assignment", "line 1")
    # every key word, any case, anywhere in a file (the pattern runs anchored where a key word starts)
    for key in ("PASSWORD", "Passwd", "pwd", "SECRET_KEY", "api_key", "ApiKey", "access_token", "AUTH_TOKEN",
                "private_key", "client_secret"):
        text = "import os\n\n" * 3 + f'    {key} = "Zq8-rT2!xw9"\n'
        assert find_secret(text) == ("password_assignment", "line 7"), key
        # a letter whose lower case is longer (İ -> i + dot) before it: offsets shift, still found
        assert find_secret("# İstanbul\n" + text) == ("password_assignment", "line 8"), key
    assert find_secret("ghp_" + "a" * 36)[0] == "github_token"
    assert find_secret("token = github_pat_" + "A1_" * 14)[0] == "github_token"
    for harmless in ('password = os.environ["DB_PASSWORD"]', 'password = "changeme123"', 'password = "<your password>"',
                     "token = self.next_token()", 'api_key = "${API_KEY}"', 'password = "aaaaaaaaaa"', GOOD):
        assert find_secret(harmless) is None, harmless
    redacted = redact_secrets("a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nxyz\n-----END RSA PRIVATE KEY-----\nb = 'AKIAQ3EGRZ7XW5NYPL2M'")
    assert "MIIE" not in redacted and "AKIAQ3" not in redacted and redacted.startswith("a\n<REDACTED:private_key>")
