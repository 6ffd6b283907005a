import argparse
import os
import subprocess
import sys

import pytest

from googlenet.cli import build_parser


def run(*args):
    return subprocess.run([sys.executable, "-m", "googlenet", *args], capture_output=True, text=True, timeout=120)


def test_help_explains_each_command():
    top = run("--help")
    assert top.returncode == 0 and "summary" in top.stdout
    sub = run("summary", "--help")
    assert sub.returncode == 0 and "--naive" in sub.stdout and "Figure 2a" in sub.stdout


def test_summary_prints_table1():
    result = run("summary")
    assert result.returncode == 0
    assert "inception_3a" in result.stdout and "159.5K" in result.stdout and "128.0M" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "--input-size", "16"],
        ["summary", "--model", "resnet"],
        ["summary", "--format", "xml"],
        ["summary", "--input-size", "big"],
        ["no-such-command"],
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(args):
    result = run(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "error" in result.stderr


def _commands(parser, prefix=()):
    """(words, parser) for the top level and every command and subcommand."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


def test_every_help_shows_the_defaults():
    """Each option that has a default says it in --help (as rendered, so argparse's %-formatting is tried too)."""
    missing = []
    for words, parser in _commands(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                rendered = " ".join(parser._get_formatter()._expand_help(action).split())
                if "default" not in rendered or rendered not in text:
                    missing.append((" ".join(words), action.option_strings[-1]))
    assert missing == []


def test_a_misspelled_option_gets_a_suggestion():
    result = run("evaluate", "--chekpoint", "runs/x")
    assert result.returncode == 2 and "--chekpoint: did you mean --checkpoint?" in result.stderr
    result = run("train", "--optim.lrr", "0.1")
    assert result.returncode == 2 and "did you mean --optim.lr?" in result.stderr


def test_a_closed_pipe_is_not_an_error():
    """`googlenet summary | head -1`: the reader is gone before the table is written (a pipe whose read end is
    closed, so the first write fails, whatever the pipe's buffer size)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "googlenet", "summary", "--naive"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize(
    "command, absent",
    [(["--help"], ["torch"]), (["summary", "--format", "json"], ["torchvision.datasets", "torch._dynamo"])],
)
def test_a_fast_start_imports_only_what_the_command_needs(command, absent):
    """`googlenet --help` imports no torch at all; `summary` neither torchvision's datasets nor torch._dynamo."""
    code = (
        "import contextlib, io, sys\nfrom googlenet.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main({command!r})\n"
        f"print([m for m in {absent!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_one_spelling_of_ensembles_images_after_the_weights(tmp_path):
    """--checkpoint takes several files at once or repeated, in every command; images may follow the weights."""
    from googlenet.cli.options import split_images

    folder = tmp_path / "run"
    folder.mkdir()
    args = build_parser(["predict"]).parse_args(["predict", "--checkpoint", str(folder), "a.safetensors", "x.jpg"])
    split_images(args)
    assert args.checkpoint == [str(folder), "a.safetensors"] and args.images == ["x.jpg"]
    args = build_parser(["predict"]).parse_args(["predict", "y.png", "--checkpoint", "a.onnx", "--checkpoint", "b.pt"])
    split_images(args)
    assert args.checkpoint == ["a.onnx", "b.pt"] and args.images == ["y.png"]
    for command in (["evaluate"], ["detect", "evaluate", "--data", "d"], ["detect", "predict", "i.jpg"]):
        parsed = build_parser(command).parse_args([*command, "--checkpoint", "a.safetensors", "--checkpoint", "b.pt"])
        assert parsed.checkpoint[:2] == ["a.safetensors", "b.pt"]
