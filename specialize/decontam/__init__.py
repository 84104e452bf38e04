"""Benchmark decontamination: drop training documents that share an n-gram with an evaluation set."""
