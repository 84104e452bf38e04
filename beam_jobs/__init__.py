"""Apache Beam pipelines of specialize. ``corpus_build.py`` is the corpus build, top to bottom."""

from beam_jobs import beam_fixes

# Launchers and SDK workers both import this package: every DoFn of the pipelines lives in one of its
# modules, so unpickling the first of them on a worker applies the fixes there too (beam_fixes.py).
beam_fixes.apply()
