"""specialize: base Qwen checkpoint -> Code-Qwen / Math-Qwen (corpus, continual pretraining, SFT)."""

__version__ = "0.1.0"
