"""Evaluate a model on GSM8K: ``uv run src/evaluate_model.py --output-dir DIR --output-file NAME.csv``."""

import sys

from gsm8k_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
