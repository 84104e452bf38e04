"""``python -m specialize.cli`` (used by ``specialize demo`` to run each stage in its own process)."""

from specialize.cli import main

main()
