"""`python -m directanimator.train ...` / `accelerate launch -m directanimator.train ...`: the same
arguments as `directanimator train`."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
