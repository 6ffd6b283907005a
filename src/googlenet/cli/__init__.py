"""The `googlenet` command: one entry point; a module per part of the paper adds its commands (model.py: the
model and its export, training.py, testing.py, detection.py), each parsing its options and calling one library
function with named arguments."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from googlenet.cli import detection, inside, model, serve, testing, training
from googlenet.cli.memory import fast_allocation


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"  # argparse %-formats help


class _Parser(argparse.ArgumentParser):
    """argparse that shows defaults in --help, reports a bad argument in one line (the usage is in --help)
    and suggests the option a misspelled one was probably meant to be."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        self._given: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._given = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            self.error(f"unrecognized arguments: {' '.join(extras)}")  # here, where the command's options are known
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._suggestions(message)} (see --help)\n")

    def _suggestions(self, message: str) -> str:
        """'; did you mean --checkpoint?' for each option given that this command does not have, and
        '; did you mean evaluate?' for a command (or any option's value) not among its choices."""
        known = list(self._option_string_actions)
        tips = []
        invalid = re.match(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from", message)
        if invalid:
            name, value = invalid.groups()
            for action in self._actions:
                names = {*action.option_strings, action.metavar, action.dest}
                if action.choices is not None and name in names:
                    choices = [str(choice) for choice in action.choices]
                    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
                    tips += [f"did you mean {close[0]}?"] if close else []
        for given in self._given:
            name = given.split("=", 1)[0]
            if name.startswith("--") and name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                tips += [f"{name}: did you mean {close[0]}?"] if close else []
        return "; " + "; ".join(tips) if tips else ""


# Each command: its name, the line `googlenet --help` shows, and what adds its options (in the module of its
# part of the paper). Only the command being run gets its options: they import that part's choices, and
# importing every room would make `googlenet --help` slow.
COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = [
    ("summary", "reproduce the paper's Table 1 from the model itself", model.add_summary),
    ("train", "train GoogLeNet with the paper's recipe (one process, or many under torchrun)", training.add_train),
    ("configs", "list the configs that ship with the package (use one with --config NAME)", training.add_configs),
    (
        "evaluate",
        "top-1 / top-5 with 1, 2, 10 or 144 crops, of one model or an ensemble; the paper's Table 3",
        testing.add_evaluate,
    ),
    ("predict", "classify image files: top classes and probabilities", testing.add_predict),
    ("explain", "where the network looks: class activation maps and Grad-CAM over image files", inside.add_explain),
    (
        "export",
        "write weights as ONNX (onnxruntime) or TorchScript (torch.jit), optionally int8, checked against eager",
        model.add_export,
    ),
    ("weights", "weights from elsewhere: import BVLC's Caffe GoogLeNet", model.add_weights),
    (
        "serve",
        "an HTTP API and a web page for a classifier (and a detector), batching concurrent requests",
        serve.add_serve,
    ),
    ("data", "make datasets: detection scenes", detection.add_data),
    (
        "detect",
        "detection (section 8): proposals, MultiBox, the region classifier, mAP, drawing boxes",
        detection.add_detect,
    ),
]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `googlenet` parser; given the command line `argv`, with the options of the command it names only."""
    parser = _Parser(
        prog="googlenet",
        description='GoogLeNet as in "Going deeper with convolutions" (Szegedy et al., 2014). '
        "Run `googlenet COMMAND --help` for each command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    chosen = next((word for word in argv if not word.startswith("-")), None) if argv is not None else None
    for name, help, add in COMMANDS:
        sub = commands.add_parser(name, help=help)
        if argv is None or name == chosen:
            add(sub)
    return parser


def _one_line(err: BaseException) -> str:
    """An error's message on one line. One raised in a DataLoader worker comes wrapped with the worker's
    traceback, whose last line holds the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines) or type(err).__name__


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: Any = None) -> str:
    """A warning as the command shows it: one line, without the source file, line and code that Python adds."""
    return f"googlenet: warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in one line on stderr and exit code 2, never a traceback. A training run
    that stops on purpose (a signal, non-finite losses, too much unreadable data) says why in one line."""
    fast_allocation()  # before torch is imported (docs/inference.md)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    from googlenet.train.checkpoint import RunStopped  # after parsing: --help needs no torch

    shown, warnings.formatwarning = warnings.formatwarning, _warning_line  # ours and the libraries', while it runs
    try:
        status = args.run(args)  # a command that partly failed (some of predict's files) returns 1
    except BrokenPipeError:  # the reader went away (`googlenet summary | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail
        return 0
    except RunStopped as err:
        print(f"googlenet: {_one_line(err)}", file=sys.stderr)
        return err.code
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or unwritable files, a full disk
        print(f"googlenet: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("googlenet: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
