import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

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


def test_a_misspelled_command_gets_a_suggestion():
    result = run("evalute", "--checkpoint", "x")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "did you mean evaluate?" in result.stderr


def test_weights_not_found_say_so_and_list_every_accepted_form(tmp_path):
    """One list of the forms weights take (googlenet.forms), in the messages and the help texts."""
    from googlenet.forms import CHECKPOINT_FORMS, EXPORT_FORMS, INITIAL_WEIGHTS_FORMS, PUBLISHED_NAMES
    from googlenet.model.exported import exported_suffixes
    from googlenet.model.hub import NAMES

    assert set(PUBLISHED_NAMES) == set(NAMES)
    assert all(suffix.rsplit(".", 1)[-1] in CHECKPOINT_FORMS for suffix in exported_suffixes())
    for forms in (CHECKPOINT_FORMS, EXPORT_FORMS, INITIAL_WEIGHTS_FORMS):
        assert ".caffemodel" in forms and all(name in forms for name in NAMES) and "run's folder" in forms
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    for args in (
        ["predict", "--checkpoint", "/no/such/file", str(image)],
        ["evaluate", "--checkpoint", "/no/such/weights.safetensors"],
        ["export", "--checkpoint", "/no/such/weights.safetensors"],
    ):
        result = run(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not found" in result.stderr and CHECKPOINT_FORMS in result.stderr, result.stderr
    not_weights = run("predict", "--checkpoint", str(image), str(image))
    assert "is no weights" in not_weights.stderr and not_weights.returncode == 2
    assert " ".join(EXPORT_FORMS.split()) in " ".join(run("export", "--help").stdout.split())
    assert " ".join(INITIAL_WEIGHTS_FORMS.split()) in " ".join(run("train", "--help").stdout.split())


def test_predict_reads_folders_and_answers_past_unreadable_files(tmp_path):
    """Folders: their image files, recursively, image endings only; an unreadable file is named on stderr, the
    others are answered, and the exit status is 1."""
    from googlenet import build_model, save_weights

    torch.manual_seed(0)
    model = build_model("googlenet_bn", num_classes=3, width=0.125, aux=False)
    model.meta.input_size, model.meta.class_names = 32, ["a", "b", "c"]
    save_weights(model, tmp_path / "w.safetensors")
    photos = tmp_path / "photos"
    (photos / "sub" / "deeper").mkdir(parents=True)
    (photos / ".hidden").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photos / "one.jpg")
    Image.new("L", (30, 40), 90).save(photos / "sub" / "deeper" / "two.PNG")
    Image.new("RGB", (8, 8)).save(photos / ".hidden" / "skipped.png")
    (photos / "notes.txt").write_text("not an image")
    (photos / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    result = run("predict", "--checkpoint", str(tmp_path / "w.safetensors"), str(photos), "--json")
    answered = json.loads(result.stdout)
    assert [Path(r["image"]).name for r in answered] == ["one.jpg", "two.PNG"], result.stdout
    assert all(len(r["predictions"]) == 3 for r in answered)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("googlenet: error: ") and "broken.png" in errors[0], errors
    good = run("predict", "--checkpoint", str(tmp_path / "w.safetensors"), str(photos / "one.jpg"))
    assert good.returncode == 0 and "one.jpg" in good.stdout and good.stderr == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("predict", "--checkpoint", str(tmp_path / "w.safetensors"), str(empty))
    assert nothing.returncode == 2 and "no image files in" in nothing.stderr


def test_warnings_are_one_line_without_source_lines(tmp_path):
    """Fine-tuning from weights without auxiliary heads warns; the command shows it as one line of its own."""
    from googlenet import build_model, save_weights
    from test_train import tiny

    from conftest import make_fashion_mnist

    model = build_model("googlenet_bn", num_classes=10, width=0.125, aux=False)
    save_weights(model, tmp_path / "noaux.safetensors")
    overrides = {**tiny(make_fashion_mnist(tmp_path / "data"), tmp_path / "run"), "run.max_steps": "1"}
    overrides["model.weights"] = str(tmp_path / "noaux.safetensors")
    result = run("train", *[word for key, value in overrides.items() for word in (f"--{key}", value)])
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert any(line.startswith("googlenet: warning:") and "auxiliary-head" in line for line in lines), lines
    assert "warnings.warn" not in result.stderr and ".py:" not in result.stderr, result.stderr[-2000:]
