"""Training configuration: dataclasses whose fields carry their own help, read from YAML, overridden on the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from googlenet.forms import INITIAL_WEIGHTS_FORMS
from googlenet.train.schedule import SCHEDULES

# The fixed sets of choices, checked in one place (_check) for YAML files and --section.field options alike.
ModelName = Literal["googlenet", "googlenet_bn", "googlenet_tv"]  # the keys of googlenet.model.VARIANTS
DecayUnit = Literal["epochs", "steps"]
Polyak = Literal["ema", "mean", "off"]
Device = Literal["auto", "cpu", "cuda"]
Resume = Literal["off", "auto"]
DType = Literal["float32", "float64"]


CONFIG = "config.yaml"  # the config a run writes into run.out, beside its checkpoint


class _YAML12(yaml.SafeLoader):
    """YAML with the 1.2 booleans, true and false only: YAML 1.1 (PyYAML's default) also reads on/off/yes/no as
    booleans, which would turn `optim.polyak: off` into False."""


_YAML12.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YAML12.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """YAML text as Python values (1.2 booleans)."""
    return yaml.load(text, Loader=_YAML12)


def setting(default: Any, help: str) -> Any:
    """A config field with its help text (lists are copied per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name: ModelName = setting("googlenet_bn", "variant: googlenet (the paper's, LRN) | googlenet_bn | googlenet_tv")
    width: float = setting(1.0, "width multiplier on every layer's filters (1.0 = Table 1)")
    input_size: int = setting(224, "square input side in pixels (>= 32)")
    dropout: float = setting(0.4, "dropout before the main classifier (paper: 40%)")
    aux_dropout: float = setting(0.7, "dropout in the auxiliary heads (paper: 70%)")
    weights: str | None = setting(
        None, f"initial weights: {INITIAL_WEIGHTS_FORMS}; the classifier is reset if the classes differ"
    )


@dataclass
class DataConfig:
    dataset: str = setting(
        "imagefolder",
        "imagefolder (root/train, root/val, one folder per class) | imagenet (ILSVRC-2012's archives, Kaggle's "
        "layout or wnid folders) | fashion_mnist | voc (detection: VOC layout)",
    )
    root: str | None = setting(None, "dataset folder; for fashion_mnist empty = Debian's package, else a download")
    train_split: str = setting("train", "split to train on (an ImageFolder subfolder, or train/test for fashion_mnist)")
    val_split: str = setting("val", "split to evaluate on after each epoch")
    train_subset: int = setting(0, "use only the first N training images (0 = all)")
    val_subset: int = setting(0, "use only the first N evaluation images (0 = all)")
    batch_size: int = setting(128, "global batch size, split evenly over the torchrun processes")
    workers: int = setting(2, "DataLoader worker processes per training process (decoding and augmentation)")
    mean: list[float] | None = setting(
        None, "per-channel mean of [0, 1] RGB; empty = the initial weights' record (model.weights), else the variant's"
    )
    std: list[float] | None = setting(
        None, "per-channel std; empty = as for mean (the paper's variant: 1/255, Caffe scale)"
    )
    crop_pct: float = setting(0.875, "evaluation: resize the shorter side to input_size / crop_pct, centre crop")
    max_bad_fraction: float = setting(
        0.05,
        "largest share of unreadable items (damaged, truncated, empty or non-image files) in a split: each is "
        "replaced by another item, warned about and listed in metrics.jsonl and results.json; more stops the run",
    )


@dataclass
class AugmentConfig:
    random_resized_crop: bool = setting(True, "random-sized crops (paper section 6); off = resize the whole image")
    crop_scale: list[float] = setting(
        [0.08, 1.0], "range of the crop's area as a fraction of the image (paper: 8%-100%)"
    )
    crop_ratio: list[float] = setting([0.75, 4 / 3], "range of the crop's aspect ratio (paper: 3/4-4/3)")
    random_interpolation: bool = setting(True, "draw the resize interpolation from bilinear, area, nearest, bicubic")
    hflip: bool = setting(True, "random horizontal flips")
    photometric: float = setting(0.5, "Howard's distortions: brightness/contrast/colour factors in 1 +- this (0 = off)")
    lighting: float = setting(0.1, "std of AlexNet's PCA lighting noise (0 = off)")


@dataclass
class OptimConfig:
    epochs: int = setting(60, "training epochs")
    lr: float = setting(0.01, "initial learning rate (for the global batch)")
    schedule: str = setting(
        "step",
        "learning-rate schedule: step (the paper's: x lr_decay every decay_every decay_unit), or one registered in "
        "googlenet.train.schedule.SCHEDULES",
    )
    momentum: float = setting(0.9, "SGD momentum (paper: 0.9)")
    weight_decay: float = setting(2e-4, "L2 weight decay on weights; biases and BatchNorm parameters get none")
    lr_decay: float = setting(0.96, "multiply the learning rate by this at each decay (paper: 0.96, i.e. -4%)")
    decay_every: float = setting(8, "decay interval, in decay_unit (paper: 8 epochs)")
    decay_unit: DecayUnit = setting("epochs", "epochs | steps (steps suit short runs)")
    warmup_steps: int = setting(0, "linear learning-rate warm-up steps (0 = none, as in the paper)")
    bias_lr_mult: float = setting(1.0, "learning-rate multiplier of the biases (the Caffe model's: 2, with no decay)")
    aux_weight: float = setting(0.3, "weight of each auxiliary loss (paper: 0.3; 0 = no auxiliary heads)")
    polyak: Polyak = setting("ema", "Polyak averaging of the weights: ema | mean (equal weights) | off")
    polyak_decay: float = setting(0.999, "EMA decay per step (ramped up as min(decay, (1+n)/(10+n)))")
    polyak_start: int = setting(0, "step at which averaging starts")


@dataclass
class RunConfig:
    out: str = setting("runs/train", "output folder: checkpoints, metrics.jsonl, plot, config, inference weights")
    resume: Resume = setting(
        "off",
        "auto: continue from run.out's checkpoint when there is one, as --resume does (for schedulers that requeue "
        "jobs, e.g. SLURM); a worker group that torchrun restarts always does",
    )
    seed: int = setting(0, "seed for data order, augmentation and dropout (and the initial weights, see init_seed)")
    init_seed: int | None = setting(
        None, "seed for the initial weights (empty = seed); ensemble members share it and differ in seed"
    )
    device: Device = setting("auto", "auto | cpu | cuda")
    threads: int = setting(0, "torch CPU threads per process (0 = PyTorch's default)")
    amp: bool = setting(True, "mixed precision (bfloat16 autocast) on CUDA; ignored on CPU")
    cpu_amp: bool = setting(
        False,
        "bfloat16 autocast on the CPU too: faster steps where the CPU has bfloat16 instructions (AVX512-BF16, AMX), "
        "much slower where it has not",
    )
    dtype: DType = setting(
        "float32", "float32 | float64: the weights' and inputs' type (float64: for numerical checks, slow)"
    )
    channels_last: bool = setting(True, "channels_last memory format (faster convolutions on CUDA and on the CPU)")
    compile: bool = setting(
        False, "torch.compile the network for training (faster steps on CUDA, after a compile of a minute or more)"
    )
    checkpoint_every: int = setting(
        500, "save a checkpoint every K steps as well as at each epoch end (0 = epoch ends only)"
    )
    log_every: int = setting(20, "write a metrics line every K steps")
    max_steps: int = setting(0, "stop after this many steps in all (0 = run all epochs)")
    tensorboard: bool = setting(
        False,
        "also write TensorBoard event files in OUT/tensorboard (rank 0): every float of metrics.jsonl as a scalar "
        "(step/loss, step/lr, step/images_per_s, eval/top1 or eval/map, ...) and the curves plot at the end "
        "(pip install 'googlenet[tensorboard]')",
    )
    max_nonfinite: int = setting(
        5, "non-finite losses in a row that stop the run (each such step is skipped and logged; checkpoints kept)"
    )


T = TypeVar("T")
CORE = ("model", "data", "augment", "optim", "run")  # the engine's sections; tasks declare more (below)
SECTION_ENTRY_POINTS = "googlenet.config"  # each entry: {section: dataclass}, declared in a task's own room
_SECTIONS: dict[str, type] = {}
_LOADED = False


def register_sections(sections: dict[str, type]) -> None:
    """Add config sections a task declares ({name: dataclass whose fields are `setting`s, with a `check()`
    that returns (ok, message) pairs}); a name may be declared once."""
    for name, kind in sections.items():
        if name in CORE or _SECTIONS.get(name, kind) is not kind:
            raise ValueError(f"config section {name!r} is declared already")
        _SECTIONS[name] = kind


def task_sections() -> dict[str, type]:
    """The tasks' config sections: the installed ones (`googlenet.config` entry points) and any registered in
    this process."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for entry in entry_points(group=SECTION_ENTRY_POINTS):
            register_sections(entry.load())
    return dict(_SECTIONS)


def _task_sections() -> dict[str, Any]:
    return {name: kind() for name, kind in task_sections().items()}


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    task: str = "classify"  # a registered task (train/tasks.py, checked when the run starts): recorded with it
    sections: dict[str, Any] = field(default_factory=_task_sections)  # the tasks' own sections, by name
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)  # section.field set explicitly

    def section(self, kind: type[T]) -> T:
        """The tasks' section of type `kind` (e.g. googlenet.detect.config.DetectConfig)."""
        found = [s for s in self.sections.values() if isinstance(s, kind)]
        if not found:
            raise ValueError(f"no config section of type {kind.__name__}: is its task registered?")
        return found[0]

    def part(self, name: str) -> Any:
        """The section called `name`, the engine's or a task's."""
        return getattr(self, name) if name in CORE else self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        """The config as YAML writes it: `task`, then each section (engine's, then the tasks')."""
        core = {name: dataclasses.asdict(getattr(self, name)) for name in CORE}
        return {"task": self.task, **core, **{name: dataclasses.asdict(s) for name, s in self.sections.items()}}


def all_sections() -> dict[str, type]:
    """Every section's dataclass by name: the engine's, then those the registered tasks declare."""
    hints = typing.get_type_hints(TrainConfig)
    return {**{name: hints[name] for name in CORE}, **task_sections()}


def _parse_value(text: str, kind: Any) -> Any:
    """A command-line string as the field's type: YAML syntax, so lists are [a, b] and null is empty."""
    value = read_yaml(text) if text != "" else None
    return _check(value, kind, text)


def _check(value: Any, kind: Any, shown: Any) -> Any:
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    origin = typing.get_origin(kind) or kind
    if origin is Literal:  # a str here; validate() checks it is one of the choices
        origin = str
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list such as [0.5, 1.0], got {shown!r}")
        return [_check(v, args[0], shown) for v in value]
    if origin is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {shown!r}")
        return value
    if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin is str and value is not None:
        return str(value)
    raise ValueError(f"expected {getattr(origin, '__name__', origin)}, got {shown!r}")


def from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from nested dicts (and the top-level `task`), checking every section, field name and type."""
    types_ = all_sections()
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a mapping of sections ({', '.join(types_)})")
    sections, given = {}, set()
    for section, kind in types_.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{source}: section {section!r} must be a mapping")
        hints = typing.get_type_hints(kind)
        unknown = set(values) - set(hints)
        if unknown:
            raise ValueError(f"{source}: unknown field {section}.{sorted(unknown)[0]} (see googlenet train --help)")
        checked = {}
        for name, value in values.items():
            try:
                checked[name] = _check(value, hints[name], value)
            except ValueError as err:
                raise ValueError(f"{source}: {section}.{name}: {err}") from None
        sections[section] = kind(**checked)
        given |= {f"{section}.{name}" for name in checked}
    unknown = set(raw) - set(types_) - {"task"}
    if unknown:
        raise ValueError(f"{source}: unknown section {sorted(unknown)[0]!r}; sections are task, {', '.join(types_)}")
    task = raw.get("task") or "classify"
    if not isinstance(task, str):
        raise ValueError(f"{source}: task must be a name, got {task!r}")
    given |= {"task"} if "task" in raw else set()
    core = {name: sections.pop(name) for name in CORE}
    return validate(TrainConfig(**core, task=task, sections=sections, given=frozenset(given)))


def packaged() -> dict[str, Path]:
    """The configs that ship with the package, by name (configs/NAME.yaml inside it)."""
    folder = Path(str(resources.files("googlenet") / "configs"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find(config: str | Path) -> Path:
    """A config file: `config` itself where it is a file, else the packaged config of that name
    (`fashion_mnist` or `fashion_mnist.yaml`)."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = packaged()
    name = path.name.removesuffix(".yaml")
    if name in shipped and (len(path.parts) == 1 or path.parent.name == "configs"):
        return shipped[name]
    raise FileNotFoundError(
        f"config file not found: {config} (a YAML file, or the name of a packaged config: {', '.join(shipped)})"
    )


def load(path: str | Path | None, overrides: dict[str, str] | None = None) -> TrainConfig:
    """Read a YAML config (a file, or a packaged config by name; or start from the defaults) and apply
    `section.field` -> text overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = find(path)
        try:
            raw = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    hints = {s: typing.get_type_hints(k) for s, k in all_sections().items()}
    for key, text in (overrides or {}).items():
        if key == "task":
            raw["task"] = text
            continue
        section, name = key.split(".", 1)
        try:
            value = _parse_value(text, hints[section][name])
        except ValueError as err:
            raise ValueError(f"--{key}: {err}") from None
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raw[section] = {}
        raw[section][name] = value
    return from_dict(raw, str(path) if path else "config")


def for_run(
    config: str | None,
    out: str | None = None,
    resume: bool = False,
    overrides: dict[str, str] | None = None,
    task: str | None = None,
) -> TrainConfig:
    """The config of a training command: `config` with `overrides`, `out` as run.out; `resume` with `out` and no
    `config` continues with that run's own config.yaml, whatever task made it. `task` is the command's (`detect
    train`: regions); a config that names another task is a one-line ValueError."""
    if out is not None:
        overrides = {**(overrides or {}), "run.out": out}
    if config is None and resume and out is not None and (Path(out) / CONFIG).is_file():
        config = str(Path(out) / CONFIG)
    cfg = load(config, overrides)
    if task is None or task == cfg.task:
        return cfg
    if "task" in cfg.given:
        raise ValueError(
            f"{config} is a {cfg.task!r} config, not {task!r}: train it with `googlenet train --config {config}`"
        )
    return validate(dataclasses.replace(cfg, task=task))


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible values with a message naming the field."""
    checks = [
        (cfg.model.input_size >= 32, "model.input_size must be at least 32"),
        (cfg.model.width > 0, "model.width must be positive"),
        (cfg.data.batch_size > 0, "data.batch_size must be positive"),
        (cfg.data.workers >= 0, "data.workers must be 0 or more"),
        (0 < cfg.data.crop_pct <= 1, "data.crop_pct must be in (0, 1]"),
        (cfg.data.mean is None or len(cfg.data.mean) == 3, "data.mean needs 3 values"),
        (
            cfg.data.std is None or (len(cfg.data.std) == 3 and min(cfg.data.std) > 0),
            "data.std needs 3 positive values",
        ),
        (
            len(cfg.augment.crop_scale) == 2 and 0 < cfg.augment.crop_scale[0] <= cfg.augment.crop_scale[1] <= 1,
            "augment.crop_scale must be [low, high] within (0, 1]",
        ),
        (
            len(cfg.augment.crop_ratio) == 2 and 0 < cfg.augment.crop_ratio[0] <= cfg.augment.crop_ratio[1],
            "augment.crop_ratio must be [low, high], positive",
        ),
        (cfg.optim.epochs > 0, "optim.epochs must be positive"),
        (cfg.optim.lr > 0, "optim.lr must be positive"),
        (0 < cfg.optim.lr_decay <= 1, "optim.lr_decay must be in (0, 1]"),
        (cfg.optim.decay_every > 0, "optim.decay_every must be positive"),
        (0 < cfg.optim.polyak_decay < 1, "optim.polyak_decay must be in (0, 1)"),
        (cfg.run.log_every > 0, "run.log_every must be positive"),
        (0 <= cfg.data.max_bad_fraction <= 1, "data.max_bad_fraction must be in [0, 1]"),
        (cfg.run.max_nonfinite >= 1, "run.max_nonfinite must be at least 1"),
        *_choices(cfg),
        *_counts(cfg),
        *_fractions(cfg),
        *(check for section in cfg.sections.values() for check in section.check()),
    ]
    from googlenet.data.loaders import DATASETS  # the layouts registered (torch: not needed for --help)

    if cfg.data.dataset not in DATASETS:
        raise ValueError(f"data.dataset must be one of {' | '.join(DATASETS)}, not {cfg.data.dataset!r}")
    if cfg.optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {' | '.join(SCHEDULES)}, not {cfg.optim.schedule!r}")
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    return cfg


def _choices(cfg: TrainConfig) -> list[tuple[bool, str]]:
    """Every field typed as a Literal holds one of its choices."""
    checks = []
    for section, kind in all_sections().items():
        for name, hint in typing.get_type_hints(kind).items():
            if typing.get_origin(hint) is Literal:
                value, choices = getattr(cfg.part(section), name), typing.get_args(hint)
                checks.append(
                    (value in choices, f"{section}.{name} must be one of {' | '.join(choices)}, not {value!r}")
                )
    return checks


def _counts(cfg: TrainConfig) -> list[tuple[bool, str]]:
    """Fields that count something: none may be negative (0 means all, none or off, as each help says)."""
    fields = [
        ("data.train_subset", cfg.data.train_subset),
        ("data.val_subset", cfg.data.val_subset),
        ("optim.warmup_steps", cfg.optim.warmup_steps),
        ("optim.polyak_start", cfg.optim.polyak_start),
        ("run.threads", cfg.run.threads),
        ("run.checkpoint_every", cfg.run.checkpoint_every),
        ("run.max_steps", cfg.run.max_steps),
    ]
    return [(value >= 0, f"{name} must be 0 or more, not {value}") for name, value in fields]


def _fractions(cfg: TrainConfig) -> list[tuple[bool, str]]:
    """Probabilities, weights and IoU thresholds within their ranges."""
    return [
        (0 <= cfg.model.dropout < 1, "model.dropout must be in [0, 1)"),
        (0 <= cfg.model.aux_dropout < 1, "model.aux_dropout must be in [0, 1)"),
        (0 <= cfg.optim.momentum < 1, "optim.momentum must be in [0, 1)"),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay must be 0 or more"),
        (cfg.optim.aux_weight >= 0, "optim.aux_weight must be 0 or more"),
        (cfg.augment.photometric >= 0, "augment.photometric must be 0 or more"),
        (cfg.augment.lighting >= 0, "augment.lighting must be 0 or more"),
        (cfg.optim.bias_lr_mult > 0, "optim.bias_lr_mult must be positive"),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --section.field option per config field, its help taken from the field."""
    for section, kind in all_sections().items():
        group = parser.add_argument_group(f"{section} (YAML section `{section}:`)")
        for f in dataclasses.fields(kind):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            group.add_argument(
                f"--{section}.{f.name}",
                dest=f"override:{section}.{f.name}",
                metavar="VALUE",
                help=f"{f.metadata['help']} (default: {default})".replace("%", "%%"),  # argparse formats help
            )


def overrides_from(args: argparse.Namespace) -> dict[str, str]:
    """The --section.field options that were given, as {section.field: text}."""
    return {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("override:") and v is not None}
