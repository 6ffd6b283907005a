"""The `googlenet` command: one entry point, each subcommand a plain function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
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


def train(config: str | None, out: str | None, resume: bool, overrides: dict[str, str]) -> None:
    """Train with the paper's recipe; print the final top-1/top-5 and where the outputs are."""
    from googlenet.train import config as train_config
    from googlenet.train.loop import CHECKPOINT, CONFIG, PLOT, WEIGHTS
    from googlenet.train.loop import train as run_training

    if out is not None:
        overrides = {**overrides, "run.out": out}
    if config is None and resume and out is not None and (Path(out) / CONFIG).is_file():
        config = str(Path(out) / CONFIG)  # `--resume --out DIR` alone continues with the run's own config
    cfg = train_config.load(config, overrides)
    results = run_training(cfg, resume=resume)
    where = cfg.run.out
    print(
        f"{cfg.data.dataset} {results['split']}: top-1 {results['top1']:.2f}%  top-5 {results['top5']:.2f}%  "
        f"(Polyak-averaged weights; raw weights top-1 {results['raw_top1']:.2f}%) after {results['step']} steps"
    )
    print(f"checkpoint: {where}/{CHECKPOINT}\ninference weights: {where}/{WEIGHTS}\nplot: {where}/{PLOT}")


def _train_parser(commands: argparse._SubParsersAction) -> None:
    from googlenet.train import config as train_config

    p = commands.add_parser(
        "train",
        help="train GoogLeNet with the paper's recipe (one process, or many under torchrun)",
        description="Train with section 6's recipe: SGD with momentum, the learning rate decreased 4% every "
        "8 epochs, auxiliary losses weighted 0.3, Polyak averaging, random-sized crops, photometric "
        "distortions and random interpolation. Settings come from --config (YAML, sections as below), then "
        "from --section.field options, which override any field. Under `torchrun --nproc_per_node N` the "
        "same command trains data-parallel. Outputs in run.out: checkpoint.pt, model.safetensors (inference "
        "weights), metrics.jsonl, curves.png, config.yaml, results.json.",
    )
    p.add_argument("--config", help="YAML file with sections model, data, augment, optim, run (see configs/)")
    p.add_argument("--out", help="output folder (same as --run.out)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the output folder (without --config: with that run's config.yaml)",
    )
    train_config.add_arguments(p)
    p.set_defaults(run=lambda a: train(a.config, a.out, a.resume, train_config.overrides_from(a)))


PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_summary_parser, _train_parser]


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
