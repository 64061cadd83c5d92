"""GRPO training with a LoRA adapter, evaluated automatically afterwards."""

import sys

from gsm8k_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-grpo", *sys.argv[1:]]))
