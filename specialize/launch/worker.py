"""What each torchrun worker process runs: the specialize CLI, under torchrun's interpreter.

torchrun starts ``python -m specialize.launch.worker <command>``; this avoids depending on a
``specialize`` console script being on PATH (an editable checkout, a Slurm module environment).
"""

from __future__ import annotations


def main() -> None:
    from specialize.cli import app

    app(prog_name="specialize")


if __name__ == "__main__":
    main()
