"""A plugin whose hook name is misspelled."""

from vllm_mlx.plugins import hookimpl


@hookimpl
def register_reasoning_parser():  # missing the final "s"
    return []
