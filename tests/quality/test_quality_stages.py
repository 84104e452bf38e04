"""The quality stages as a build assembles them: from a profile's sections and the command-line switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_jobs.quality import QualityConfig, quality_stages
from specialize.corpus.profile import PROFILE_DIR, load_profile


def _profile(tmp_path: Path, domain: str, extra: str = ""):
    text = (PROFILE_DIR / f"{domain}.yaml").read_text()
    path = tmp_path / f"{domain}.yaml"
    path.write_text(text + extra)
    return load_profile(domain, path), str(path)


def _labels(stages):
    return [label for label, _ in stages]


def test_defaults_come_from_the_shipped_profiles(tmp_path):
    code, _ = _profile(tmp_path, "code")
    assert _labels(quality_stages(QualityConfig(), code, str(tmp_path))) == [
        "RuleFilter", "SecretFilter", "ExactDedup", "NearDedup", "Decontaminate"]
    math, _ = _profile(tmp_path, "math")
    assert _labels(quality_stages(QualityConfig(), math, str(tmp_path))) == ["RuleFilter", "ExactDedup", "NearDedup"]


def test_switches_and_overrides(tmp_path, gsm8k_dir):
    code, _ = _profile(tmp_path, "code")
    config = QualityConfig(filters=False, secrets=False, exact_dedup=False, near_dedup_settings={"bands": 20, "rows": 5},
                           decontaminate=[f"gsm8k={gsm8k_dir / 'test.jsonl'}"], source_weights={"x": 2.0})
    stages = dict(quality_stages(config, code, str(tmp_path)))
    assert list(stages) == ["NearDedup", "Decontaminate", "Upsample"]
    assert stages["NearDedup"]._stage._settings.minhash.num_perm == 100
    assert _labels(quality_stages(QualityConfig(near_dedup=False, decontaminate=[]), code, str(tmp_path))) == [
        "RuleFilter", "SecretFilter", "ExactDedup"]


def test_profile_and_flag_errors_are_named(tmp_path):
    code, where = _profile(tmp_path, "code", "\nunused: 1\n")
    broken = load_profile("code", where)
    broken.raw["filters"] = {**broken.raw["filters"], "max_line": 5}
    with pytest.raises(ValueError, match=r"filters:: unknown key\(s\) \['max_line'\]"):
        quality_stages(QualityConfig(), broken, str(tmp_path), where)
    with pytest.raises(ValueError, match="unknown near_dedup setting"):
        quality_stages(QualityConfig(near_dedup_settings={"bandz": 3}), code, str(tmp_path))
    with pytest.raises(ValueError, match="--min-quality needs --quality-model"):
        quality_stages(QualityConfig(min_quality=0.5), code, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such quality model"):
        quality_stages(QualityConfig(quality_model=str(tmp_path / "none.npz")), code, str(tmp_path))
