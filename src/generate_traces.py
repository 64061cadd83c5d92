"""Rejection-sample reasoning traces from a GRPO run (first correct of N attempts, else the gold solution)."""

import sys

from gsm8k_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-traces", *sys.argv[1:]]))
