"""``python -m specialize.train ARGS`` == ``specialize train ARGS``; the form torchrun launches:

    torchrun --nproc-per-node 8 -m specialize.train --from qwen-14b --config megatron_configs/cpt-code.yaml
"""

import typer

from specialize.cli.train import train

if __name__ == "__main__":
    typer.run(train)
