"""Apache Beam pipelines of specialize. ``corpus_build.py`` is the corpus build, top to bottom."""
