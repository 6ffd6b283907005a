"""Training configuration: dataclasses whose fields carry their own help, read from YAML, overridden on the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

# The fixed sets of choices, checked in one place (_check) for YAML files and --section.field options alike.
ModelName = Literal["googlenet", "googlenet_bn", "googlenet_tv"]  # the keys of googlenet.model.VARIANTS
Dataset = Literal["imagefolder", "imagenet", "fashion_mnist", "voc"]
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


def _f(default: Any, help: str) -> Any:
    """A config field with its help text (lists are copied per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name: ModelName = _f("googlenet_bn", "variant: googlenet (the paper's, LRN) | googlenet_bn | googlenet_tv")
    width: float = _f(1.0, "width multiplier on every layer's filters (1.0 = Table 1)")
    input_size: int = _f(224, "square input side in pixels (>= 32)")
    dropout: float = _f(0.4, "dropout before the main classifier (paper: 40%)")
    aux_dropout: float = _f(0.7, "dropout in the auxiliary heads (paper: 70%)")
    weights: str | None = _f(
        None, "initial weights (.safetensors or torchvision .pth); classifier reset if classes differ"
    )


@dataclass
class DataConfig:
    dataset: Dataset = _f(
        "imagefolder",
        "imagefolder (root/train, root/val, one folder per class) | imagenet (ILSVRC-2012's archives, Kaggle's "
        "layout or wnid folders) | fashion_mnist | voc (detection: VOC layout)",
    )
    root: str | None = _f(None, "dataset folder; for fashion_mnist empty = Debian's package, else a download")
    train_split: str = _f("train", "split to train on (an ImageFolder subfolder, or train/test for fashion_mnist)")
    val_split: str = _f("val", "split to evaluate on after each epoch")
    train_subset: int = _f(0, "use only the first N training images (0 = all)")
    val_subset: int = _f(0, "use only the first N evaluation images (0 = all)")
    batch_size: int = _f(128, "global batch size, split evenly over the torchrun processes")
    workers: int = _f(2, "DataLoader worker processes per training process (decoding and augmentation)")
    mean: list[float] | None = _f(
        None, "per-channel mean of [0, 1] RGB; empty = the initial weights' record (model.weights), else the variant's"
    )
    std: list[float] | None = _f(None, "per-channel std; empty = as for mean (the paper's variant: 1/255, Caffe scale)")
    crop_pct: float = _f(0.875, "evaluation: resize the shorter side to input_size / crop_pct, centre crop")
    max_bad_fraction: float = _f(
        0.05,
        "largest share of unreadable items (damaged, truncated, empty or non-image files) in a split: each is "
        "replaced by another item, warned about and listed in metrics.jsonl and results.json; more stops the run",
    )


@dataclass
class AugmentConfig:
    random_resized_crop: bool = _f(True, "random-sized crops (paper section 6); off = resize the whole image")
    crop_scale: list[float] = _f([0.08, 1.0], "range of the crop's area as a fraction of the image (paper: 8%-100%)")
    crop_ratio: list[float] = _f([0.75, 4 / 3], "range of the crop's aspect ratio (paper: 3/4-4/3)")
    random_interpolation: bool = _f(True, "draw the resize interpolation from bilinear, area, nearest, bicubic")
    hflip: bool = _f(True, "random horizontal flips")
    photometric: float = _f(0.5, "Howard's distortions: brightness/contrast/colour factors in 1 +- this (0 = off)")
    lighting: float = _f(0.1, "std of AlexNet's PCA lighting noise (0 = off)")


@dataclass
class OptimConfig:
    epochs: int = _f(60, "training epochs")
    lr: float = _f(0.01, "initial learning rate (for the global batch)")
    momentum: float = _f(0.9, "SGD momentum (paper: 0.9)")
    weight_decay: float = _f(2e-4, "L2 weight decay on weights; biases and BatchNorm parameters get none")
    lr_decay: float = _f(0.96, "multiply the learning rate by this at each decay (paper: 0.96, i.e. -4%)")
    decay_every: float = _f(8, "decay interval, in decay_unit (paper: 8 epochs)")
    decay_unit: DecayUnit = _f("epochs", "epochs | steps (steps suit short runs)")
    warmup_steps: int = _f(0, "linear learning-rate warm-up steps (0 = none, as in the paper)")
    bias_lr_mult: float = _f(1.0, "learning-rate multiplier of the biases (the Caffe model's: 2, with no decay)")
    aux_weight: float = _f(0.3, "weight of each auxiliary loss (paper: 0.3; 0 = no auxiliary heads)")
    polyak: Polyak = _f("ema", "Polyak averaging of the weights: ema | mean (equal weights) | off")
    polyak_decay: float = _f(0.999, "EMA decay per step (ramped up as min(decay, (1+n)/(10+n)))")
    polyak_start: int = _f(0, "step at which averaging starts")


@dataclass
class RunConfig:
    out: str = _f("runs/train", "output folder: checkpoints, metrics.jsonl, plot, config, inference weights")
    resume: Resume = _f(
        "off",
        "auto: continue from run.out's checkpoint when there is one, as --resume does (for schedulers that requeue "
        "jobs, e.g. SLURM); a worker group that torchrun restarts always does",
    )
    seed: int = _f(0, "seed for data order, augmentation and dropout (and the initial weights, see init_seed)")
    init_seed: int | None = _f(
        None, "seed for the initial weights (empty = seed); ensemble members share it and differ in seed"
    )
    device: Device = _f("auto", "auto | cpu | cuda")
    threads: int = _f(0, "torch CPU threads per process (0 = PyTorch's default)")
    amp: bool = _f(True, "mixed precision (bfloat16 autocast) on CUDA; ignored on CPU")
    cpu_amp: bool = _f(
        False,
        "bfloat16 autocast on the CPU too: faster steps where the CPU has bfloat16 instructions (AVX512-BF16, AMX), "
        "much slower where it has not",
    )
    dtype: DType = _f(
        "float32", "float32 | float64: the weights' and inputs' type (float64: for numerical checks, slow)"
    )
    channels_last: bool = _f(True, "channels_last memory format (faster convolutions on CUDA and on the CPU)")
    compile: bool = _f(
        False, "torch.compile the network for training (faster steps on CUDA, after a compile of a minute or more)"
    )
    checkpoint_every: int = _f(
        500, "save a checkpoint every K steps as well as at each epoch end (0 = epoch ends only)"
    )
    log_every: int = _f(20, "write a metrics line every K steps")
    max_steps: int = _f(0, "stop after this many steps in all (0 = run all epochs)")
    tensorboard: bool = _f(False, "also log to TensorBoard (needs the tensorboard package)")
    max_nonfinite: int = _f(
        5, "non-finite losses in a row that stop the run (each such step is skipped and logged; checkpoints kept)"
    )


@dataclass
class MultiBoxConfig:
    priors: int = _f(100, "MultiBox: number of predicted boxes, as offsets to as many k-means prior boxes")
    alpha: float = _f(0.3, "MultiBox: weight of the location term against the confidence term of the matching loss")
    top: int = _f(200, "MultiBox: proposals kept per image after NMS (the paper: 200)")
    nms: float = _f(0.7, "MultiBox: IoU of the non-maximum suppression among its own boxes")
    grid: int = _f(
        4,
        "MultiBox head: the last feature map is pooled to grid x grid and reduced to 128 channels before the "
        "fully connected box layers, so they see where things are (0: the classifier's global average pool)",
    )
    tiles: int = _f(
        1,
        "MultiBox proposals: also run on a tiles x tiles grid of overlapping crops (3: nine crops of half the "
        "image, small objects seen 2x larger), all boxes then NMS and top; 1 = the whole image only",
    )


@dataclass
class DetectConfig:
    proposals: str = _f(
        "ss2x", "region classifier: proposal method whose windows it trains on (ss, ss2x, ...; cached per image)"
    )
    foreground: float = _f(0.25, "region classifier: fraction of object windows per batch (R-CNN: 32 of 128)")
    fg_iou: float = _f(0.5, "region classifier: a window with IoU >= this to an object is that object's class")
    context: int = _f(16, "region classifier: pixels of context around each box after warping (R-CNN: 16 at 227)")
    val_windows: int = _f(
        4000, "region classifier: evaluation windows per epoch, with the batches' share of object windows"
    )


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    multibox: MultiBoxConfig = field(default_factory=MultiBoxConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {name: hints[name] for name in SECTIONS}


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
    """A TrainConfig from nested dicts, checking every section, field name and type."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)})")
    sections = {}
    for section, kind in _section_types().items():
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
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{source}: unknown section {sorted(unknown)[0]!r}; sections are {', '.join(SECTIONS)}")
    return validate(TrainConfig(**sections))


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
    hints = {s: typing.get_type_hints(k) for s, k in _section_types().items()}
    for key, text in (overrides or {}).items():
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
    config: str | None, out: str | None = None, resume: bool = False, overrides: dict[str, str] | None = None
) -> TrainConfig:
    """The config of a `googlenet train` command: `config` with `overrides`, `out` as run.out; `resume` with
    `out` and no `config` continues with that run's own config.yaml."""
    if out is not None:
        overrides = {**(overrides or {}), "run.out": out}
    if config is None and resume and out is not None and (Path(out) / CONFIG).is_file():
        config = str(Path(out) / CONFIG)
    return load(config, overrides)


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
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    return cfg


def _choices(cfg: TrainConfig) -> list[tuple[bool, str]]:
    """Every field typed as a Literal holds one of its choices."""
    checks = []
    for section, kind in _section_types().items():
        for name, hint in typing.get_type_hints(kind).items():
            if typing.get_origin(hint) is Literal:
                value, choices = getattr(getattr(cfg, section), name), typing.get_args(hint)
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
        ("multibox.grid", cfg.multibox.grid),
        ("detect.context", cfg.detect.context),
        ("detect.val_windows", cfg.detect.val_windows),
    ]
    return [(value >= 0, f"{name} must be 0 or more, not {value}") for name, value in fields] + [
        (cfg.multibox.priors >= 1, "multibox.priors must be at least 1"),
        (cfg.multibox.top >= 1, "multibox.top must be at least 1"),
    ]


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
        (0 < cfg.multibox.nms <= 1, "multibox.nms must be in (0, 1]"),
        (cfg.multibox.alpha >= 0, "multibox.alpha must be 0 or more"),
        (cfg.optim.bias_lr_mult > 0, "optim.bias_lr_mult must be positive"),
        (0 < cfg.detect.fg_iou <= 1, "detect.fg_iou must be in (0, 1]"),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --section.field option per config field, its help taken from the field."""
    for section, kind in _section_types().items():
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
