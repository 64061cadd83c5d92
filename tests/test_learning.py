"""A small prep SFT on the real embedded model teaches it the answer format."""

import json
import os


def test_prep_sft_raises_the_answer_proportion(run_cli, tmp_path):
    env = {"EVAL_SAMPLES": "32", "PREP_TRAIN_SAMPLES": "32"}
    base = run_cli("evaluate_model.py", "--output-dir", str(tmp_path / "base"), "--output-file", "base.csv",
                   "--max-new-tokens", "300", env=env)
    assert base.returncode == 0, base.stderr[-2000:]
    before = json.loads((tmp_path / "base" / "debug" / "base_metrics.json").read_text())

    prep = run_cli("train_sft.py", "--stage", "prep", "--output-dir", str(tmp_path / "prep"),
                   "--eval-max-new-tokens", "300", env=env)
    assert prep.returncode == 0, prep.stderr[-2000:]
    info = json.loads((tmp_path / "prep" / "run.json").read_text())
    after = info["eval"]
    assert info["model_chain"]["base"].startswith("embedded:")
    # measured here: about 0.05 before and 0.3 after (32 problems x 2 epochs, 32 test problems, greedy)
    assert after["answer_proportion"] >= before["answer_proportion"] + 0.15, (before, after)
    assert os.path.isfile(tmp_path / "prep" / "model" / "adapter_config.json")
