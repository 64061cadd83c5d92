"""Bad input nobody listed: Hypothesis generates settings values, environment variables, paths and
data-file contents for every command, and each example must keep the contract.

The contract: exit code 0 or 2; on 2 exactly one line, ``error: ...``, and no traceback; every
finished run, evaluation, model and input file that existed before (the shared ``world`` of
tests/test_bad_input.py and the tiny model) is byte-identical afterwards. Each example changes one
thing of a command line that works (a flag's value, a variable, a path, the bytes of a data or
settings file).

CI runs a fixed, bounded sample (profile ``ci``: derandomized, so every run tries the same
examples); ``GSM8K_LAB_HYPOTHESIS=long`` runs many more by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import EVAL, EVALUATED_ARGS, TINY_ENV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import _error_line, _snapshot, world  # noqa: F401  (the shared folder of runs and inputs)

from gsm8k_lab import cli, runtime
from gsm8k_lab.config import env_vars

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=600, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("GSM8K_LAB_HYPOTHESIS", "ci"))

#: Text a user might type, chosen to reach every parser: numbers in every spelling, words, unicode digits
#: and spaces, control characters, the words settings treat specially.
SPECIAL = ["", " ", "all", "ALL", "none", "null", "~", "true", "off", "0", "-0", "1_0", "0x10", "1e3", "1e-300",
           "1e309", "nan", "-inf", "９", "٣", "1:00", "1,5", "+3", "00", "9" * 30, "-9" * 10, "[]", "{}",
           "a,b", "q_proj,,", "\u2028", "\ufeff1", "é", "\t", "1 2", "--help"]
TEXT = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)
#: Paths of every kind the world holds, and paths no file system takes.
PATHS = ["{finished}", "{evaluated}", "{traced}", "{unfinished}", "{model}", "{empty}", "{file}", "{dir}",
         "{loop}", "{dangling}", "{finished}/model", "{finished}/debug/x", "{evaluated}/debug", "{binary}",
         "{dir}/missing", "/", "/proc/self", "/dev/null", "n" * 300, "{dir}/" + "é" * 200, ".", ""]
#: Bytes a data or settings file might hold.
DATA = st.one_of(
    st.sampled_from([b"", b"\n", b"\xef\xbb\xbf" + b'{"question": "q", "answer": "#### 1"}\n',
                     b'{"question": "q\xe2\x80\xa8r", "answer": "#### 1"}\n',
                     b'{"question": "q", "answer": "#### 1"}\x0c{"question": "r", "answer": "#### 2"}\n',
                     b"[" * 100_000, b'{"question": "\\ud800", "answer": "#### 1"}\n', b"eval: {samples: 1:00}\n",
                     b"seed: 1_0\n", b"seed: 1\nseed: 2\n", b"eval:\n  samples: [1, 2]\n", b"\x00\x01\x02",
                     b'{"question": "q", "answer": "#### 1e999"}\n', b"lora: {r: -1}\n"]),
    st.binary(max_size=64),
    st.lists(st.fixed_dictionaries({"question": st.text(max_size=20), "answer": st.text(max_size=20)}),
             max_size=3).map(lambda recs: "".join(json.dumps(r) + "\n" for r in recs).encode()),
)

#: A command line that works, per command ({names} are filled from the world).
BASE = {
    "evaluate": ["--model-path", "{model}", "--output-file", "e.csv", *EVALUATED_ARGS],
    "train-sft": ["--stage", "prep", "--base-model", "{model}", *EVAL],
    "train-grpo": ["--base-model", "{finished}", "--gradient-accumulation-steps", "1", "--max-completion-length", "8",
                   *EVAL],
    "generate-traces": ["--grpo-model", "{finished}", "--num-samples", "2", "--max-attempts", "1", "--max-new-tokens",
                        "8", "--dtype", "fp32"],
    "report": ["{finished}"],
}
OUTPUT = {"evaluate": "--output-dir", "train-sft": "--output-dir", "train-grpo": "--output-dir",
          "generate-traces": "--output-dir", "report": "--out"}
FILE_FLAGS = {"evaluate": ["--data", "--config"], "train-sft": ["--train-data", "--config"],
              "train-grpo": ["--config"], "generate-traces": ["--config"], "report": []}


@st.composite
def examples(draw):
    """(command, arguments, environment, file bytes or None, what was changed)."""
    command = draw(st.sampled_from(sorted(BASE)))
    args = list(BASE[command])
    flags = sorted(cli.setting_flags(cli.COMMANDS[command]).values())
    kinds = ["flag", "env", "path"] + (["file"] if FILE_FLAGS[command] else [])
    kind = draw(st.sampled_from(kinds if flags else ["path"]))
    env, data = {}, None
    if kind == "flag":
        flag = draw(st.sampled_from(flags))
        args += [flag, draw(TEXT)]
    elif kind == "env":
        env[draw(st.sampled_from(sorted(env_vars())))] = draw(TEXT)
    elif kind == "path":
        which = draw(st.sampled_from([OUTPUT[command], *(["--model-path"] if command == "evaluate" else []),
                                      *(["--base-model"] if command.startswith("train") else [])]))
        args += [which, draw(st.sampled_from(PATHS))]
    else:
        args += [draw(st.sampled_from(FILE_FLAGS[command])), "{data_file}"]
        data = draw(DATA)
    return command, args, env, data, kind


@given(examples())
def test_every_command_keeps_the_contract(world, tiny_model_dir, example):  # noqa: F811
    command, args, env, data, kind = example
    work = Path(tempfile.mkdtemp(prefix="gsm8k-lab-property-"))
    before = None
    try:
        names = {**world, "data_file": str(work / "input.data")}
        if data is not None:
            (work / "input.data").write_bytes(data)
        args = [_fill(a, names) for a in args]
        if command != "report" and OUTPUT[command] not in args:
            args += [OUTPUT[command], str(work / "out")]
        if command == "report" and "--out" not in args:
            args += ["--out", str(work / "report")]
        before = _snapshot(Path(world["dir"]), tiny_model_dir)
        code, err = _run(command, args, {**TINY_ENV, "OUTPUT_DIR": str(work / "outputs"), **env}, work)
        lines = _error_line(err)
        assert code in (0, 2), (code, args, env, err[-3000:])
        assert "Traceback" not in err, (args, env, err[-3000:])
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, env, lines)
        after = _snapshot(Path(world["dir"]), tiny_model_dir)
        changed = sorted(p for p in before if after.get(p) != before[p])
        assert not changed, (args, env, "a finished result changed", changed[:5])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if before is not None:
            _remove_new(Path(world["dir"]), before)  # a new folder in the world (an output path made there) is no change


def _remove_new(root: Path, before: dict) -> None:
    """Delete what an example created inside the shared world, so the next example sees it as it was."""
    for p in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        if str(p) not in before:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _fill(text: str, names: dict) -> str:
    for k, v in sorted(names.items(), key=lambda kv: -len(kv[0])):
        text = text.replace("{" + k + "}", v)
    return text


def _run(command: str, args: list[str], env: dict, cwd: Path) -> tuple[int, str]:
    """The command in this process, with only ``env``'s settings variables, from ``cwd``: (exit code, stderr)."""
    err = io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for var in env_vars() - {"GSM8K_LAB_THREADS"}:
        os.environ.pop(var, None)
    os.environ.update({k: v for k, v in env.items() if "\x00" not in v})
    os.environ["HF_HUB_OFFLINE"] = "1"
    runtime.reset()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stderr(err):
            try:
                code = cli.main([command, *args])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        runtime.reset()
    return code, err.getvalue()


@pytest.mark.parametrize("text", SPECIAL)
def test_every_special_word_is_a_value_or_a_one_line_refusal(text):
    """The parser on its own, for every special word and every setting: a value of the setting's type or a
    UsageError (a one-line refusal), never anything else."""
    from gsm8k_lab.config import Source, UsageError, iter_settings, parse_value

    for path, _, _ in iter_settings():
        try:
            parse_value(path, text, Source("flag", "--x", text))
        except UsageError:
            pass
