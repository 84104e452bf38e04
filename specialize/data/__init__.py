"""Embedded default data: corpora that exist on every machine or that we generate offline."""
