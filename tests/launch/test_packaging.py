"""A built wheel, installed non-editable as the Docker image installs it, finds every model preset and
run config from any working directory (they are package data, not files beside a source checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import specialize
from specialize.configs import shipped_run_configs
from specialize.model.presets import get_preset, known_presets
from specialize.sft.run import load_sft_config
from specialize.train.config import load_config

presets = {name: get_preset(name).num_layers for name in known_presets()}
configs = {}
for name in shipped_run_configs():
    if name.startswith("sft-"):
        run, _ = load_sft_config(name)
    else:
        run = load_config(name)
    configs[name] = run.train.steps
configs["megatron_configs/cpt-code.yaml"] = load_config("megatron_configs/cpt-code.yaml").train.steps
print(json.dumps({"package": specialize.__file__, "presets": presets, "configs": configs}))
"""


def test_wheel_installed_elsewhere_resolves_every_preset_and_run_config(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("specialize", "beam_jobs", "megatron_configs"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(dist)], check=True,
                   capture_output=True)
    wheel = next(dist.glob("specialize-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site))  # the installed copy, not this checkout
    expected_presets = {p.stem for p in (REPO / "megatron_configs" / "models").glob("*.yaml")}
    expected_configs = {p.stem for p in (REPO / "megatron_configs").glob("*.yaml")}
    assert set(found["presets"]) == expected_presets and len(expected_presets) >= 20
    assert set(found["configs"]) == expected_configs | {"megatron_configs/cpt-code.yaml"}
    info = subprocess.run([sys.executable, "-m", "specialize.cli", "model", "info", "qwen-14b"], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert info.returncode == 0 and "qwen-14b" in info.stdout, info.stderr[-2000:]


def test_a_config_name_resolves_to_the_shipped_file_and_a_typo_lists_them(tmp_path, monkeypatch):
    from specialize.configs import CONFIG_DIR, resolve_config_path
    from specialize.train.config import ConfigError, read_config_file

    monkeypatch.chdir(tmp_path)  # no megatron_configs/ here
    assert resolve_config_path("cpt-code") == CONFIG_DIR / "cpt-code.yaml"
    assert resolve_config_path("megatron_configs/sft-math.yaml") == CONFIG_DIR / "sft-math.yaml"
    (tmp_path / "cpt-code.yaml").write_text("train:\n  steps: 7\n")
    assert read_config_file("cpt-code.yaml") == {"train": {"steps": 7}}  # a file here wins over the shipped one
    with pytest.raises(ConfigError, match=r"cpt-cod\.yaml: config file not found .*shipped: cpt-code-long, cpt-code, cpt-math"):
        read_config_file("cpt-cod.yaml")
