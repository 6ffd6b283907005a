import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from googlenet.model import VARIANTS
from googlenet.train import config as train_config
from googlenet.train.tasks import task_names

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"smoke.yaml", "fashion_mnist.yaml", "imagenet.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses(path):
    cfg = train_config.load(path)
    assert cfg.optim.momentum == 0.9 and cfg.optim.aux_weight == 0.3  # the paper's, in every config
    assert cfg.to_dict()["model"]["name"] in ("googlenet", "googlenet_bn", "googlenet_tv")


def test_overrides_take_yaml_syntax_and_are_typed():
    cfg = train_config.load(
        ROOT / "configs" / "smoke.yaml",
        {"optim.lr": "0.2", "augment.crop_scale": "[0.2, 0.9]", "augment.hflip": "false", "data.mean": ""},
    )
    assert cfg.optim.lr == 0.2 and cfg.augment.crop_scale == [0.2, 0.9] and cfg.augment.hflip is False
    assert cfg.data.mean is None and cfg.model.input_size == 32  # the rest still from the file
    for key, value, message in [
        ("optim.lr", "fast", "expected float"),
        ("augment.hflip", "1", "true or false"),
        ("augment.crop_scale", "0.5", "list"),
        ("optim.polyak", "median", "polyak must be"),
        ("model.input_size", "16", "at least 32"),
    ]:
        with pytest.raises(ValueError, match=message):
            train_config.load(None, {key: value})


def test_fixed_choices_are_literal_types_checked_in_one_place(tmp_path):
    assert typing.get_args(train_config.ModelName) == tuple(VARIANTS)  # the config's list is the model's
    for key, value in [("optim.polyak", "median"), ("model.name", "inception_v3"), ("run.dtype", "float16")]:
        with pytest.raises(ValueError, match=rf"{key} must be one of .* not '{value}'"):
            train_config.load(None, {key: value})
    # YAML 1.2 booleans: `off` is the string it reads as, in a file and on the command line alike.
    assert train_config.load(None, {"optim.polyak": "off"}).optim.polyak == "off"
    (tmp_path / "off.yaml").write_text("optim:\n  polyak: off\naugment:\n  hflip: false\n")
    cfg = train_config.load(tmp_path / "off.yaml")
    assert cfg.optim.polyak == "off" and cfg.augment.hflip is False
    with pytest.raises(ValueError, match="true or false"):  # yes/no/on/off are no booleans
        train_config.load(None, {"augment.hflip": "yes"})
    # A TrainConfig built in Python is checked by the same rule.
    with pytest.raises(ValueError, match=r"run\.device must be one of"):
        train_config.validate(train_config.TrainConfig(run=train_config.RunConfig(device="tpu")))


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        train_config.load(tmp_path / "absent.yaml")
    (tmp_path / "typo.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown field optim\.learning_rate"):
        train_config.load(tmp_path / "typo.yaml")
    (tmp_path / "broken.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        train_config.load(tmp_path / "broken.yaml")


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "googlenet", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_packaged_configs_by_name_from_an_empty_folder(tmp_path):
    """The configs ship inside the package: `--config NAME` (or configs/NAME.yaml) works from any folder."""
    listed = _cli("configs", cwd=tmp_path)
    assert listed.returncode == 0 and {line.split()[0] for line in listed.stdout.splitlines()} == {
        p.stem for p in CONFIGS
    }
    found = {train_config.find(c).resolve() for c in ("smoke", "smoke.yaml", "configs/smoke.yaml")}
    assert found == {train_config.packaged()["smoke"].resolve()}
    shown = _cli("configs", "--show", "smoke", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == (ROOT / "configs" / "smoke.yaml").read_text()
    missing = _cli("train", "--config", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "packaged config: detect_scenes" in missing.stderr


def test_a_missing_data_root_is_an_error(tmp_path):
    """Not a silent fall-back to the system's copy of the data (which would be recorded as this root)."""
    result = _cli("train", "--config", "smoke", "--data.root", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr and len(result.stderr.splitlines()) == 1


def test_train_help_explains_every_field():
    result = _cli("train", "--help")
    assert result.returncode == 0
    sections = train_config.all_sections()
    assert {"model", "data", "augment", "optim", "run", "multibox", "detect"} <= set(sections)
    for name, kind in sections.items():
        for field in dataclasses.fields(kind):
            assert f"--{name}.{field.name}" in result.stdout
    assert {"classify", "regions", "multibox"} <= set(task_names())
    assert f"--task {{{','.join(task_names())}}}" in result.stdout


def test_smoke_config_through_the_cli_and_resume(fmnist, tmp_path):
    out = tmp_path / "smoke"
    first = _cli("train", "--config", "smoke", "--out", str(out), "--data.root", str(fmnist), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "top-1" in first.stdout and "model.safetensors" in first.stdout
    for name in ("checkpoint.pt", "metrics.jsonl", "curves.png", "model.safetensors", "config.yaml"):
        assert (out / name).is_file(), name
    steps = json.loads((out / "results.json").read_text())["step"]
    again = _cli(
        "train",
        "--config",
        "configs/smoke.yaml",
        "--out",
        str(out),
        "--data.root",
        str(fmnist),
        "--resume",
        "--optim.epochs",
        "3",
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming at step {steps}" in again.stderr
    assert json.loads((out / "results.json").read_text())["step"] == steps * 3 // 2
    # --resume --out DIR alone continues with the run's own config.yaml (data.root included).
    third = _cli("train", "--out", str(out), "--resume", "--optim.epochs", "4")
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["step"] == steps * 2


def test_train_with_a_missing_config_is_one_line():
    result = _cli("train", "--config", "does-not-exist.yaml")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "does-not-exist.yaml" in result.stderr
