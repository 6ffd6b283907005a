import subprocess
import sys

import pytest


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
