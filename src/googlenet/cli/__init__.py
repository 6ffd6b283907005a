"""The `googlenet` command: one entry point; a module per part of the paper adds its commands (model.py: the
model and its export, training.py, testing.py, detection.py), each parsing its options and calling one library
function with named arguments."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from googlenet.cli import detection, model, testing, training
from googlenet.cli.options import Commands
from googlenet.train.checkpoint import RunStopped


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {shown})".replace("%", "%%").replace("%%(", "%(")


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
        self.exit(2, f"{self.prog}: error: {message}{self._suggestions()} (see --help)\n")

    def _suggestions(self) -> str:
        """'; did you mean --checkpoint?' for each option given that this command does not have."""
        known = list(self._option_string_actions)
        tips = []
        for given in self._given:
            name = given.split("=", 1)[0]
            if name.startswith("--") and name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                tips += [f"{name}: did you mean {close[0]}?"] if close else []
        return "; " + "; ".join(tips) if tips else ""


PARSERS: list[Callable[[Commands], None]] = [
    model.add_summary,
    training.add_train,
    training.add_configs,
    testing.add_evaluate,
    testing.add_predict,
    model.add_export,
    detection.add_data,
    detection.add_detect,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="googlenet",
        description='GoogLeNet as in "Going deeper with convolutions" (Szegedy et al., 2014). '
        "Run `googlenet COMMAND --help` for each command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in PARSERS:
        add(commands)
    return parser


def _one_line(err: BaseException) -> str:
    """An error's message on one line. One raised in a DataLoader worker comes wrapped with the worker's
    traceback, whose last line holds the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in one line on stderr and exit code 2, never a traceback. A training run
    that stops on purpose (a signal, non-finite losses, too much unreadable data) says why in one line."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except RunStopped as err:
        print(f"googlenet: {_one_line(err)}", file=sys.stderr)
        return err.code
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or unwritable files, a full disk
        print(f"googlenet: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("googlenet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
