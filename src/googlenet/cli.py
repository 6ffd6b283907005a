"""The `googlenet` command: one entry point, each subcommand a plain function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from googlenet.model import VARIANTS, build_model


def summary(model: str, input_size: int, format: str, naive: bool, width: float) -> str:
    """Table 1 computed from the built model."""
    from googlenet.model.summary import render, table1

    if input_size < 32:
        raise ValueError(f"--input-size must be at least 32, not {input_size}")
    return render(table1(build_model(model, width=width, aux=True), input_size, naive=naive), format)


def _summary_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "summary",
        help="reproduce the paper's Table 1 from the model itself",
        description="Walk the built model's modules and print Table 1: type, patch size/stride, output "
        "size, depth, filter counts, weights and multiply-adds per row, beside the paper's printed figures. "
        "Rows marked * differ from the printed table (for the paper's model at 224: the table's slips).",
    )
    p.add_argument("--model", default="googlenet", choices=list(VARIANTS), help="variant (default: googlenet)")
    p.add_argument("--input-size", type=int, default=224, help="square input side in pixels, >= 32 (default: 224)")
    p.add_argument("--format", default="table", choices=["table", "markdown", "json"], help="output format")
    p.add_argument(
        "--naive",
        action="store_true",
        help="add the cost of the naive module (Figure 2a) at the same widths beside each inception row",
    )
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (1.0 = Table 1)")
    p.set_defaults(run=lambda a: print(summary(a.model, a.input_size, a.format, a.naive, a.width)))


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_summary_parser]


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in one line on stderr and exit code 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"googlenet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("googlenet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
