"""python -m vllm_mlx.demo OUT_DIR: build the demo model into OUT_DIR."""

import sys
import time

from . import build_demo_model


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m vllm_mlx.demo OUT_DIR", file=sys.stderr)
        return 2
    start = time.perf_counter()
    path = build_demo_model(argv[0])
    print(f"{path.resolve()} ({time.perf_counter() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
