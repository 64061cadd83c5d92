"""Every command shown in README.md and docs/ is accepted by the command line it names.

Each shell command in a ``bash`` code block, and each inline ```uv run ...``` in
the prose, is parsed in-process by the parser that would run it: the project's
own (``gsm8k-lab``, the seed's scripts in ``src/``), accelerate's launcher, TRL's
``vllm-serve`` and the benchmark scripts' argparse. A command of the project is
then resolved into its settings (environment prefix, ``--config`` file, flags)
and validated, as the command would before any work. A renamed flag, a removed
setting or a value out of range in the documentation fails here, not for the
reader. Commands of other tools (``uv sync``, ``pip``, ``git``) are listed
below by name; anything else is an error, so a new kind of command cannot slip
through unchecked.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gsm8k_lab import cli
from gsm8k_lab.config import iter_settings, validate

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
OTHER_TOOLS = {("uv", "sync"), ("uv", "run", "pytest"), ("pip", "install"), ("curl",), ("source",),
               ("git", "clone"), ("cd",)}
SEED_ENV = sorted({f.metadata["env"] for _, f, _ in iter_settings() if f.metadata.get("env")})


@dataclass
class DocCommand:
    where: str  # page:line
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    config_text: str | None = None  # the page's last YAML block before the command (for --config NAME)

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.argv)}"


def documented_commands() -> list[DocCommand]:
    """Every shell command of every page, in order."""
    found = []
    for page in PAGES:
        found += _page_commands(page)
    return found


def pytest_generate_tests(metafunc):
    if "command" in metafunc.fixturenames:
        metafunc.parametrize("command", documented_commands(), ids=str)


def test_the_pages_show_commands_of_each_kind():
    commands = documented_commands()
    kinds = {_kind(_without_extras(c.argv)) for c in commands}
    assert {"gsm8k-lab", "script", "accelerate", "trl", "bench"} <= kinds, kinds
    assert len(commands) > 40


def test_documented_command_is_accepted(command, monkeypatch, tmp_path):
    argv = _without_extras(command.argv)
    kind = _kind(argv)
    if kind == "other":
        return
    if kind == "gsm8k-lab":
        _check_project(argv[3:], command, monkeypatch, tmp_path)
    elif kind == "script":
        _check_project([_script_command(argv[2]), *argv[3:]], command, monkeypatch, tmp_path)
    elif kind == "accelerate":
        _check_accelerate(argv[argv.index("launch") + 1:], command, monkeypatch, tmp_path)
    elif kind == "trl":
        from trl.scripts.vllm_serve import make_parser

        _parse(make_parser(), argv[argv.index("vllm-serve") + 1:], command)
    elif kind == "bench":
        _check_bench(argv[argv.index("python") + 1:], command, monkeypatch)
    elif kind == "shell":
        assert (REPO / argv[1]).is_file(), f"{command}: no such script"
    else:
        pytest.fail(f"{command}: a command of no known kind; check it here or list its tool in OTHER_TOOLS")


def test_a_renamed_flag_is_caught(monkeypatch, tmp_path):
    """The check itself fails on a flag the parser does not know."""
    bad = DocCommand("x.md:1", ["uv", "run", "src/train_sft.py", "--output-dir", "o", "--prep-samples", "4"])
    with pytest.raises(pytest.fail.Exception, match="--prep-samples"):
        _check_project(["train-sft", *bad.argv[3:]], bad, monkeypatch, tmp_path)


def test_a_value_out_of_range_is_caught(monkeypatch, tmp_path):
    bad = DocCommand("x.md:1", [], env={"NUM_GENERATIONS": "1"})
    with pytest.raises(pytest.fail.Exception, match="grpo.num_generations"):
        _check_project(["train-grpo", "--output-dir", "o"], bad, monkeypatch, tmp_path)


# --------------------------------------------------------------------------
# Reading the pages
# --------------------------------------------------------------------------
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
STARTS = ("uv run ", "accelerate launch ", "bash bench/")


def _page_commands(page: Path) -> list[DocCommand]:
    text = page.read_text()
    name = page.relative_to(REPO).as_posix()
    found: list[DocCommand] = []
    yaml_text = None
    fenced = []
    for m in FENCE.finditer(text):
        fenced.append(m.span())
        lang, body = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start(2)) + 1
        if lang == "yaml":
            yaml_text = body
        elif lang == "bash":
            found += _block_commands(body, name, line, yaml_text)
    prose = text
    for a, b in reversed(fenced):
        prose = prose[:a] + "\n" * text.count("\n", a, b) + prose[b:]
    for m in INLINE.finditer(prose):
        span = " ".join(m.group(1).split())
        if "..." in span or "{" in span:  # a sketch of a command line, not a command
            continue
        line = prose.count("\n", 0, m.start()) + 1
        for part in span.split(" && "):
            if part.startswith(STARTS) or re.match(r"^[A-Z_]+=\S+ uv run ", part):
                found += _block_commands(part, name, line, yaml_text)
    return found


def _block_commands(body: str, page: str, first_line: int, yaml_text: str | None) -> list[DocCommand]:
    out, variables = [], {}
    joined, starts, buf = [], [], None
    for i, line in enumerate(body.split("\n")):  # join continued lines, remembering where each starts
        if buf is None:
            buf = ""
            starts.append(i)
        buf += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            joined.append(buf)
            buf = None
    for text, i in zip(joined, starts):
        for name, value in variables.items():
            text = text.replace("$" + name, value)
        tokens = [t.strip("[]") for t in shlex.split(text, comments=True)]
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            words, tokens = tokens[:cut], tokens[cut + 1:]
            env = {}
            if words and words[0] == "export":
                variables.update(w.split("=", 1) for w in words[1:])
                continue
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                k, v = words.pop(0).split("=", 1)
                env[k] = v
            if not words:
                variables.update(env)
                continue
            env = {**{k: v for k, v in variables.items() if k in SEED_ENV}, **env}
            out.append(DocCommand(f"{page}:{first_line + i}", words, env, yaml_text))
    return out


def _without_extras(argv: list[str]) -> list[str]:
    """``uv run --extra NAME ...`` runs the same command as ``uv run ...``, in an environment with that
    extra installed."""
    if argv[:2] != ["uv", "run"]:
        return argv
    rest = argv[2:]
    while rest[:1] == ["--extra"] and len(rest) > 1:
        rest = rest[2:]
    return ["uv", "run", *rest]


def _kind(argv: list[str]) -> str:
    for other in OTHER_TOOLS:
        if tuple(argv[:len(other)]) == other:
            return "other"
    rest = argv[2:] if argv[:2] == ["uv", "run"] else argv
    if rest[:1] == ["gsm8k-lab"] and argv[:2] == ["uv", "run"]:
        return "gsm8k-lab"
    if rest[:1] and rest[0].startswith("src/") and rest[0].endswith(".py") and argv[:2] == ["uv", "run"]:
        return "script"
    if rest[:2] == ["accelerate", "launch"]:
        return "accelerate"
    if rest[:2] == ["trl", "vllm-serve"]:
        return "trl"
    if rest[:1] == ["python"] and rest[1:2] and rest[1].startswith("bench/"):
        return "bench"
    if argv[:1] == ["bash"] and argv[1:2] and argv[1].endswith(".sh"):
        return "shell"
    return "unknown"


# --------------------------------------------------------------------------
# Checking one command
# --------------------------------------------------------------------------
def _script_command(script: str) -> str:
    """The gsm8k-lab command a seed script in src/ runs (read from the script itself)."""
    m = re.search(r'main\(\["([a-z0-9-]+)"', (REPO / script).read_text())
    assert m, f"{script} does not call gsm8k_lab.cli.main"
    return m.group(1)


def _parse(parser: argparse.ArgumentParser, argv: list[str], command: DocCommand):
    try:
        if hasattr(parser, "parse_args_and_config"):
            return parser.parse_args_and_config(argv)
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{command}: not accepted by its parser (see the message above)")


def _check_project(argv: list[str], command: DocCommand, monkeypatch, tmp_path) -> None:
    args = _parse(cli.build_parser(), argv, command)
    config = getattr(args, "config", None)
    if config and not Path(config).exists():  # a settings file the page shows in a YAML block
        assert command.config_text, f"{command}: --config {config} is neither a file nor shown on the page"
        (tmp_path / Path(config).name).write_text(command.config_text)
        args.config = str(tmp_path / Path(config).name)
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)
    for k, v in command.env.items():
        monkeypatch.setenv(k, v)
    ctx = cli.Context(args)
    try:
        ctx.load()
        validate(ctx.settings)
    except Exception as exc:  # SettingError, UsageError: the command would refuse to start
        pytest.fail(f"{command}: {type(exc).__name__}: {exc}")


def _check_accelerate(argv: list[str], command: DocCommand, monkeypatch, tmp_path) -> None:
    from accelerate.commands.launch import launch_command_parser

    args = _parse(launch_command_parser(), argv, command)
    if args.config_file:
        assert (REPO / args.config_file).is_file(), f"{command}: no such accelerate config"
    script = args.training_script
    assert script.startswith("src/"), f"{command}: launches {script}"
    _check_project([_script_command(script), *args.training_script_args], command, monkeypatch, tmp_path)


class _Parsed(Exception):
    pass


def _check_bench(argv: list[str], command: DocCommand, monkeypatch) -> None:
    """Run a benchmark script up to its argument parsing, and no further."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    with pytest.raises(_Parsed):
        try:
            runpy.run_path(str(REPO / argv[0]), run_name="__main__")
        except SystemExit:
            pytest.fail(f"{command}: not accepted by its parser (see the message above)")
    import torch

    # parsing alone changes nothing in the process (a benchmark that switched autograd off before its
    # parser once broke every training test after this file)
    assert torch.is_grad_enabled(), f"{command}: parsing its arguments switched autograd off"
