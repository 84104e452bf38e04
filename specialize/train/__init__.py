"""Continual pretraining (and the runtime SFT reuses): config, data, loop, checkpoints, logging."""
