"""The `googlenet` command: one entry point; a module per part of the paper adds its commands (model.py: the
model and its export, training.py, testing.py, detection.py), each parsing its options and calling one library
function with named arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from googlenet.cli import detection, model, testing, training
from googlenet.cli.options import Commands
from googlenet.train.checkpoint import RunStopped


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
