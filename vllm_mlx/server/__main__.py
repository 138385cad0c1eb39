"""`python -m vllm_mlx.server [--model M] ...`: the older vllm-mlx's way to start the server,
kept so its documented command lines work; the same as `vllm-mlx serve ...`."""

import sys

from ..cli.main import cli

if __name__ == "__main__":
    cli(["serve", *sys.argv[1:]], prog_name="python -m vllm_mlx.server")
