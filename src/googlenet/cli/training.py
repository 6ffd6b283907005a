"""Training (section 6): `googlenet train`, and the runner that MultiBox and the region classifier train with."""

from __future__ import annotations

import argparse


def train(a: argparse.Namespace, task: str | None = None) -> None:
    """Train with the paper's recipe the registered task `task` (the command's: `detect train` trains "regions"),
    else the config's (`task:`, or --task; a resumed run's own); print the final metrics and where the outputs
    are."""
    from googlenet.train import config as train_config
    from googlenet.train.loop import train as run_training
    from googlenet.train.task import CHECKPOINT, PLOT, WEIGHTS
    from googlenet.train.tasks import task_spec

    overrides = train_config.overrides_from(a)
    if a.device is not None:
        overrides = {**overrides, "run.device": a.device}
    cfg = train_config.for_run(a.config, a.out, a.resume, overrides, task=task or getattr(a, "task", None))
    results = run_training(cfg, resume=a.resume)
    where = cfg.run.out
    print(task_spec(cfg.task).make().summary(results, cfg))
    print(f"checkpoint: {where}/{CHECKPOINT}\ninference weights: {where}/{WEIGHTS}\nplot: {where}/{PLOT}")


def add_train(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train with section 6's recipe: SGD with momentum, the learning rate decreased 4% every "
        "8 epochs, auxiliary losses weighted 0.3, Polyak averaging, random-sized crops, photometric "
        "distortions and random interpolation. Settings come from --config (YAML, sections as below), then "
        "from --section.field options, which override any field. Under `torchrun --nproc_per_node N` the "
        "same command trains data-parallel. Outputs in run.out: checkpoint.pt, model.safetensors (inference "
        "weights), metrics.jsonl, curves.png, config.yaml, results.json (and unreadable.jsonl, when image files "
        "could not be read and were skipped). SIGTERM or Ctrl-C: checkpoint, then stop (continue with --resume)."
    )
    from googlenet.train.tasks import task_names

    add_training_options(p, "YAML file with sections model, data, augment, optim, run (see configs/)")
    p.add_argument(
        "--task",
        choices=task_names(),
        help="what to train, as the config's `task:` says it (default: the config's, else classify; with --resume "
        "the run's own): classify = section 6's image classification; regions = the region classifier "
        "(`googlenet detect train`); multibox = MultiBox proposals (`googlenet detect train-multibox`)",
    )
    p.set_defaults(run=train)


def configs(a: argparse.Namespace) -> None:
    """The packaged configs, each with the first line of its description."""
    from googlenet.train.config import packaged

    for name, path in packaged().items():
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "# ")
        print(f"{name:<22} {first.lstrip('# ')}")


def add_configs(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The YAML configs inside the installed package, by name: `googlenet train --config NAME` "
        "finds them from any folder (a path to a YAML file works too). Copy one to change it: "
        "`googlenet configs --show NAME > my.yaml`."
    )
    p.add_argument("--show", metavar="NAME", help="print that config's YAML instead of the list")
    p.set_defaults(run=lambda a: print(_config_text(a.show), end="") if a.show else configs(a))


def _config_text(name: str) -> str:
    from googlenet.train.config import find

    return find(name).read_text()


def add_training_options(p: argparse.ArgumentParser, config_help: str) -> None:
    """--config, --out, --resume and one --section.field per config field: every command that trains."""
    from googlenet.train import config as train_config

    p.epilog = (
        "Each --section.field VALUE is read as YAML, as in the config file: numbers as written, booleans true or "
        "false, lists in brackets (--augment.crop_scale '[0.08, 1.0]'), an empty value for null "
        "(--data.mean ''); e.g. --optim.lr 0.05 --optim.polyak off --run.amp false."
    )
    p.add_argument(
        "--config", help=f"{config_help}; a packaged config's NAME works from any folder (googlenet configs)"
    )
    p.add_argument("--out", help="output folder (same as --run.out)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train (same as --run.device)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the output folder (without --config: with that run's config.yaml)",
    )
    train_config.add_arguments(p)
