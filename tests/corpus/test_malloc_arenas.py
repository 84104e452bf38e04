"""beam_jobs.malloc_arenas: a local build's worker processes start with one malloc arena, and the
user's own setting and the environment after the build are left alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from beam_jobs.malloc_arenas import ENVIRONMENT_VARIABLE, _limit_this_process, one_malloc_arena

CHILD_READS_IT = [sys.executable, "-c", f"import os; print(os.environ.get({ENVIRONMENT_VARIABLE!r}))"]


def test_processes_started_during_the_build_get_one_arena_and_the_setting_goes_after(monkeypatch):
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    with one_malloc_arena():
        assert subprocess.run(CHILD_READS_IT, capture_output=True, text=True, check=True).stdout.strip() == "1"
    assert ENVIRONMENT_VARIABLE not in os.environ


def test_a_users_own_setting_is_kept(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "4")
    with one_malloc_arena():
        assert os.environ[ENVIRONMENT_VARIABLE] == "4"
    assert os.environ[ENVIRONMENT_VARIABLE] == "4"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_this_process_is_limited_through_mallopt():
    assert _limit_this_process(1)
