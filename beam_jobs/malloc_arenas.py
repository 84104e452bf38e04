"""One glibc malloc arena for a local build's processes.

glibc gives each thread that allocates an arena of its own (up to 8 per core), and each arena keeps its
own high-water mark: memory freed in one arena is reused only by the threads attached to it. A local
build's SDK worker runs the per-document stages, Beam's gRPC and state threads and the tokenizer's
threads; with two worker processes the 4x stdlib build's process tree peaked at 0.81 GB with glibc's
arenas and 0.72 GB with one (``benchmarks/corpus_scale.py --workers 2``; growth over the 1x build 64
-> about 30 MB), and the build was no slower (15.56 s against 15.48 s on torch+transformers: the
threads spend their time in tiktoken and numpy, not in malloc; with the variable set for a whole
benchmark process, raw tiktoken itself ran 7.45 s against about 8.3 s). It is
the ``MALLOC_ARENA_MAX`` setting that JVM and Python services commonly run with for the same reason.

SDK worker processes read it from the environment when they start, so the variable is set while the
pipeline runs and restored after; the launcher (which hosts the in-process worker) gets ``mallopt``,
which limits the arenas it creates from then on. A user's own ``MALLOC_ARENA_MAX`` is left as it is.
Other C libraries ignore the variable, and the call is skipped where there is no glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform

ENVIRONMENT_VARIABLE = "MALLOC_ARENA_MAX"
#: glibc's mallopt parameter number of M_ARENA_MAX (malloc.h).
M_ARENA_MAX = -8


def _limit_this_process(arenas: int) -> bool:
    """mallopt(M_ARENA_MAX, arenas) in this process; False where there is no glibc to ask."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def one_malloc_arena():
    """While the block runs: processes started from here use one malloc arena, and so does this one
    from now on (arenas it already made stay). Does nothing when the user set ``MALLOC_ARENA_MAX``."""
    if ENVIRONMENT_VARIABLE in os.environ:
        yield
        return
    _limit_this_process(1)
    os.environ[ENVIRONMENT_VARIABLE] = "1"
    try:
        yield
    finally:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
