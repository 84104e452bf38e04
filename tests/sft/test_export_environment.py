"""The SFT export runs in a fresh process that sees neither the launcher's variables nor the attention
backend's NVTE_* switches of the training run (megatron checks those against the export's model)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from specialize.sft import run as sft_run


def test_export_process_environment(monkeypatch, tmp_path):
    for name, value in {"NVTE_FLASH_ATTN": "1", "NVTE_FUSED_ATTN": "0", "RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "29500",
                        "TORCHELASTIC_USE_AGENT_STORE": "True", "SPECIALIZE_KEEP_ME": "yes"}.items():
        monkeypatch.setenv(name, value)
    seen = {}

    def fake_run(command, check, env):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sft_run.subprocess, "run", fake_run)
    destination = sft_run.export_in_subprocess(tmp_path / "run")
    assert destination == Path(tmp_path / "run" / sft_run.HF_DIR)
    assert seen["command"][-4:] == ["export", str(tmp_path / "run"), "--output", str(destination)]
    assert not [k for k in seen["env"] if k.startswith(("NVTE_", "TORCHELASTIC_")) or k in ("RANK", "WORLD_SIZE", "MASTER_PORT")]
    assert seen["env"]["SPECIALIZE_KEEP_ME"] == "yes"
