"""The planted corpus through the real stages: every stage removes exactly what was planted for it."""

from __future__ import annotations

import json

from tests.quality.planted import planted_code, planted_math, run_planted

JUNK_REASONS = {
    "junk/long_lines.py": "long_lines", "junk/minified.js": "minified", "junk/long_mean_line.py": "long_mean_line",
    "junk/ascii_art.py": "low_alphanumeric", "junk/numbers.py": "data_like", "junk/hexblob.py": "data_like",
    "junk/generated.py": "auto_generated", "junk/tiny.py": "too_short",
    "secrets/deploy_key.py": "secret_private_key", "secrets/aws.py": "secret_aws_access_key",
    "secrets/github.py": "secret_github_token", "secrets/settings.py": "secret_password_assignment",
    "junk/no_math.txt": "low_math_score", "junk/number_table.txt": "low_alpha_words",
    "junk/repetitive.txt": "repetitive_lines", "junk/boilerplate.txt": "boilerplate", "junk/short.txt": "too_short",
}


def _check(result):
    for stage, score in result["scores"].items():
        assert (score["wrong"], score["missed"]) == ([], []), stage
        assert score["precision"] == score["recall"] == 1.0
    for rejection in result["rejections"]:
        if rejection.source in JUNK_REASONS:
            assert rejection.reason == JUNK_REASONS[rejection.source], rejection.source


def test_planted_code(tmp_path):
    planted = planted_code()
    result = run_planted(planted, "code", ["humaneval"], tmp_path)
    _check(result)
    assert set(result["scores"]) == {"rules", "secrets", "exact_dedup", "near_dedup", "decontaminate"}
    assert len(result["kept"]) == sum(1 for p in planted if p.expected_stage is None)
    audit = json.loads((tmp_path / "stage-decontaminate.json").read_text())["benchmarks"]["humaneval"]
    assert audit["items"] == 164 and audit["documents_removed"] == 1 and audit["matched_items"] == ["HumanEval/12"]
    secret_samples = [r.text_sample for r in result["rejections"] if r.stage == "secrets"]
    assert all("AKIAQ3EGRZ7XW5NYPL2M" not in s and "Tr0ub4dor" not in s and "MIIEow" not in s for s in secret_samples)


def test_planted_math(tmp_path, gsm8k_dir):
    planted = planted_math(gsm8k_dir / "test.jsonl")
    result = run_planted(planted, "math", [f"gsm8k={gsm8k_dir / 'test.jsonl'}"], tmp_path)
    _check(result)
    assert set(result["scores"]) == {"rules", "exact_dedup", "near_dedup", "decontaminate"}
    audit = json.loads((tmp_path / "stage-decontaminate.json").read_text())["benchmarks"]["gsm8k"]
    assert audit["matched_items"] == ["gsm8k/7"] and audit["items"] == 1319
