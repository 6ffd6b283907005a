import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from googlenet import GoogLeNetOutputs, build_model, load_model, save_weights
from googlenet.data import eval_transform
from googlenet.data.loaders import train_loader
from googlenet.train import config as train_config
from googlenet.train.classification import compute_loss
from googlenet.train.loop import make_averaged, param_groups, setup, train, train_step, update_average
from googlenet.train.schedule import lr_at

ROOT = Path(__file__).resolve().parents[1]


def tiny(data_root, out, **extra):
    """Overrides for a seconds-long run on the tiny generated Fashion-MNIST (no workers: exactly reproducible)."""
    return {
        "model.name": "googlenet_bn",
        "model.width": "0.125",
        "model.input_size": "32",
        "data.dataset": "fashion_mnist",
        "data.root": str(data_root),
        "data.val_split": "test",
        "data.batch_size": "16",
        "data.workers": "0",
        "data.crop_pct": "1.0",
        "optim.epochs": "2",
        "optim.lr": "0.05",
        "optim.decay_every": "3",
        "optim.decay_unit": "steps",
        "optim.polyak_decay": "0.9",
        "run.out": str(out),
        "run.checkpoint_every": "2",
        "run.log_every": "1",
        **extra,
    }


def tiny_config(data_root, out, **extra):
    return train_config.load(None, tiny(data_root, out, **extra))


def test_lr_schedule_decreases_4_percent_every_8_epochs():
    at = lambda step: lr_at(step, 0.01, 0.96, 8, "epochs", steps_per_epoch=100)  # noqa: E731
    assert at(0) == at(799) == 0.01
    assert at(800) == pytest.approx(0.0096) and at(1599) == pytest.approx(0.0096)
    assert at(1600) == pytest.approx(0.01 * 0.96**2) and at(8000) == pytest.approx(0.01 * 0.96**10)
    assert lr_at(25, 0.1, 0.96, 10, "steps") == pytest.approx(0.1 * 0.96**2)
    assert lr_at(0, 0.1, every=100, warmup_steps=10) == pytest.approx(0.01)
    assert lr_at(9, 0.1, every=100, warmup_steps=10) == pytest.approx(0.1)


class _Fixed(nn.Module):
    def forward(self, x, return_aux=False):
        logits = torch.tensor([[2.0, 0.0, 0.0]]).repeat(len(x), 1)
        out = GoogLeNetOutputs(logits, torch.zeros(len(x), 3), torch.tensor([[0.0, 3.0, 0.0]]).repeat(len(x), 1))
        return out if return_aux else logits


def test_aux_losses_are_weighted_0_3():
    targets = torch.tensor([0, 0])
    loss, main, _ = compute_loss(_Fixed(), torch.zeros(2, 3), targets, aux_weight=0.3)
    ce = lambda row: nn.functional.cross_entropy(torch.tensor([row]), torch.tensor([0]))  # noqa: E731
    assert main == pytest.approx(ce([2.0, 0.0, 0.0]).item())
    assert loss == pytest.approx((ce([2.0, 0, 0]) + 0.3 * (ce([0.0, 0, 0]) + ce([0.0, 3.0, 0]))).item())
    loss0, main0, _ = compute_loss(_Fixed(), torch.zeros(2, 3), targets, aux_weight=0)
    assert loss0 == main0


def test_no_weight_decay_on_biases_and_batchnorm():
    model = build_model("googlenet_bn", num_classes=10, width=0.25)
    decay, none = param_groups(model, 2e-4)
    assert decay["weight_decay"] == 2e-4 and none["weight_decay"] == 0
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.ndim > 1}
    assert id(model.inception_5b.branch5x5.conv.conv.weight) in {id(p) for p in decay["params"]}
    assert {id(p) for p in none["params"]} == {
        id(p) for n, p in model.named_parameters() if n.endswith("bias") or ".bn." in n
    }


def test_polyak_ema_and_mean():
    model = nn.Linear(1, 1, bias=False)
    good, bad = torch.zeros(1), torch.ones(1)
    mean = make_averaged(model, "mean")
    for value in (1.0, 2.0, 6.0):
        model.weight.data.fill_(value)
        update_average(mean, model, "mean", 0.9, good)
    model.weight.data.fill_(100.0)
    update_average(mean, model, "mean", 0.9, bad)  # a skipped step moves nothing
    assert mean.module.weight.item() == pytest.approx(3.0) and int(mean.n_averaged) == 3
    ema = make_averaged(model, "ema")
    model.weight.data.fill_(0.0)
    update_average(ema, model, "ema", 0.5, good)  # first update copies
    model.weight.data.fill_(10.0)
    update_average(ema, model, "ema", 0.5, good)  # n=1: decay min(0.5, 2/11)
    assert ema.module.weight.item() == pytest.approx(10 * (1 - 2 / 11))
    assert make_averaged(model, "off") is None


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model("googlenet_bn", num_classes=4, width=0.25, dropout=0.0, aux_dropout=0.0)
    images, targets = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    optimizer = torch.optim.SGD(param_groups(model, 0.0), lr=0.05, momentum=0.9)
    model.train()
    first, _, _ = compute_loss(model, images, targets, 0.3)
    for _ in range(30):
        loss, _, _ = compute_loss(model, images, targets, 0.3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # train mode: BatchNorm uses this batch's statistics, as in the steps above
        assert (model(images).argmax(1) == targets).all()
    assert first.item() > 1.5 and loss.item() < 0.05


def _log_without_timing(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"} for line in lines]


def _weights(out):
    return load_model(Path(out) / "model.safetensors").state_dict()


def test_resume_ends_with_the_same_weights(fmnist, tmp_path):
    full = train(tiny_config(fmnist, tmp_path / "full"))
    # Stop mid-epoch (after 7 of 12 steps; the last checkpoint is at step 6), then resume to the end.
    train(tiny_config(fmnist, tmp_path / "cut", **{"run.max_steps": "7"}))
    resumed = train(tiny_config(fmnist, tmp_path / "cut"), resume=True)
    assert full["step"] == resumed["step"] == 12
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ckpt_a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    ckpt_b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for key in ckpt_a["model"]:
        assert torch.equal(ckpt_a["model"][key], ckpt_b["model"][key]), key
    assert full["top1"] == resumed["top1"]
    # The metrics log is cut back to the checkpoint and redone, so it matches the uninterrupted run's, but for the
    # line that says where it resumed.
    cut = _log_without_timing(tmp_path / "cut")
    assert [r for r in cut if r["kind"] == "resume"] == [
        {
            "kind": "resume",
            "step": 7,
            "epoch": 1,
            "restart": 0,
            "processes": 1,
            "processes_before": 1,
            "per_process_batch": 16,
        }
    ]
    assert _log_without_timing(tmp_path / "full") == [r for r in cut if r["kind"] != "resume"]


def _board(out):
    """The scalars of a run's TensorBoard event files, read back as TensorBoard reads them: tag -> values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return {**scalars, "images": events.Tags()["images"]}


def test_run_outputs(fmnist, tmp_path):
    results = train(tiny_config(fmnist, tmp_path / "run", **{"optim.epochs": "1", "run.tensorboard": "true"}))
    out = tmp_path / "run"
    for name in ("checkpoint.pt", "model.safetensors", "metrics.jsonl", "curves.png", "config.yaml", "results.json"):
        assert (out / name).is_file(), name
    model = load_model(out / "model.safetensors")
    assert model.aux1 is None and model.meta.class_names[0] == "T-shirt/top" and model.meta.input_size == 32
    assert model.meta.metrics["fashion_mnist/test"]["top1"] == results["top1"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("eval") == 1 and records[-1]["kind"] == "final"
    board = _board(out)  # run.tensorboard: the same figures as metrics.jsonl, and the curves
    steps = [r for r in records if r["kind"] == "step"]
    for key in ("loss", "lr", "images_per_s"):
        assert board[f"step/{key}"] == pytest.approx([r[key] for r in steps], rel=1e-6), key
    assert board["eval/top1"] == pytest.approx([r["top1"] for r in records if r["kind"] == "eval"])
    assert board["final/top1"] == pytest.approx([results["top1"]]) and board["images"] == ["curves"]
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["model"]["width"] == 0.125 and checkpoint["step"] == 6
    assert set(checkpoint) >= {"model", "averaged", "optimizer", "rng", "step", "epoch", "config"}


def test_fine_tuning_normalises_inputs_as_the_initial_weights_record_says(fmnist, tmp_path):
    """model.weights brings its input scale (another variant default would feed it inputs it never saw);
    data.mean/std, where set, still win."""
    start = build_model("googlenet_bn", num_classes=10, width=0.125)
    start.meta.mean, start.meta.std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    weights = save_weights(start, tmp_path / "start.safetensors")
    run = setup(tiny_config(fmnist, tmp_path / "tuned", **{"model.weights": str(weights)}))
    assert (run.mean, run.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    image = run.val_data.dataset[0][0]  # the evaluation transform normalises with the same record
    assert torch.equal(run.val_data[0][0], eval_transform(32, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 1.0)(image))
    fresh = setup(tiny_config(fmnist, tmp_path / "fresh"))
    assert fresh.mean == build_model("googlenet_bn").meta.mean  # no weights: the variant's
    chosen = setup(
        tiny_config(fmnist, tmp_path / "set", **{"model.weights": str(weights), "data.mean": "[0.5, 0.5, 0.5]"})
    )
    assert chosen.mean == (0.5, 0.5, 0.5) and chosen.std == (0.4, 0.5, 0.6)


def test_ensemble_members_share_initial_weights_but_not_sampling(fmnist, tmp_path):
    """The paper's ensemble: run.init_seed fixes the initial weights, run.seed the data order and dropout."""
    runs = {
        name: setup(tiny_config(fmnist, tmp_path / name, **extra))
        for name, extra in {
            "plain": {},
            "a": {"run.seed": "1", "run.init_seed": "0"},
            "b": {"run.seed": "2", "run.init_seed": "0"},
            "other": {"run.seed": "1"},
        }.items()
    }
    first = {name: next(iter(train_loader(r.train_data, 16, 0, 1, 0, r.cfg.run.seed)[0])) for name, r in runs.items()}
    for key, value in runs["plain"].model.state_dict().items():
        assert torch.equal(value, runs["a"].model.state_dict()[key]), key
        assert torch.equal(value, runs["b"].model.state_dict()[key]), key
    assert not torch.equal(runs["a"].model.conv1[0].weight, runs["other"].model.conv1[0].weight)
    assert not torch.equal(first["a"][1], first["b"][1])  # different data order
    assert torch.equal(first["a"][1], first["other"][1])


# The paper variant (no BatchNorm, no dropout: nothing that depends on the per-process batch), in float64: runs
# over the same global batches with any number of processes differ by rounding alone.
PAPER_F64 = {
    "model.name": "googlenet",
    "model.dropout": "0",
    "model.aux_dropout": "0",
    "data.mean": "[0.2, 0.2, 0.2]",
    "data.std": "[0.3, 0.3, 0.3]",
    "optim.lr": "0.01",
    "optim.epochs": "1",
    "run.checkpoint_every": "0",
    "run.threads": "1",
    "run.dtype": "float64",
}


def _torchrun(nproc, data_root, out, entry=("-m", "googlenet")):
    """PAPER_F64 under torchrun, with TensorBoard. Returns (results, the logged losses, the raw weights)."""
    overrides = tiny(data_root, out, **PAPER_F64, **{"run.tensorboard": "true"})
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *entry,
        "train",
        *[f"--{k}={v}" for k, v in overrides.items()],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = Path(out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines if '"kind": "step"' in line]  # global-batch means
    weights = torch.load(out / "checkpoint.pt", weights_only=True)["model"]  # float64, not averaged
    return json.loads((out / "results.json").read_text()), losses, weights


def _largest_relative_difference(a, b):
    """max over tensors of max|a - b| / max|a|: how far apart two sets of weights are, in units of their size."""
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)) for k in a)


def test_torchrun_two_processes_match_one_and_a_wrong_gradient_average_does_not(fmnist, tmp_path):
    """Two processes of 8 images each, gradients averaged by DDP, train as one process of 16 does.

    Both sides run in float64 (run.dtype), so they differ by rounding alone: DDP adds the two halves'
    gradients in another order than one process does. Measured after these 6 steps: 3e-16 of the weights'
    size in float64; in float32, where oneDNN's kernels also split the batch differently, 2e-4 to 3e-4 (on
    AVX-512 CPUs, about 4,500 float32 unit roundoffs of 6e-8: the 20 layers and 6 steps amplify it). Even
    that amplification of float64's unit roundoff (1.1e-16) gives 5e-13, so 1e-9 leaves 2,000 times as
    much for any CPU's kernels. A wrong DDP moves the weights by about as much as training does: summed
    instead of averaged gradients (tests/ddp_summing_gradients.py) by 0.8 of their size, another data
    order by 0.7 (measured).
    """
    two, two_losses, two_weights = _torchrun(2, fmnist, tmp_path / "two")
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # written by rank 0 alone
    assert _board(tmp_path / "two")["step/loss"] == pytest.approx(two_losses)
    one, one_losses, one_weights = _torchrun(1, fmnist, tmp_path / "one")
    assert one["processes"] == 1 and two["processes"] == 2 and two["ranks_identical"] is True
    assert len(one_losses) == 6 and one_losses == pytest.approx(two_losses, rel=1e-9)
    assert _largest_relative_difference(one_weights, two_weights) < 1e-9
    # The control: the same comparison fails on a DDP that sums the processes' gradients.
    summed, summed_losses, summed_weights = _torchrun(
        2, fmnist, tmp_path / "summed", entry=[str(ROOT / "tests" / "ddp_summing_gradients.py")]
    )
    assert summed["ranks_identical"] is True  # the ranks agree with each other, and are wrong together
    assert summed_losses[0] == pytest.approx(one_losses[0], rel=1e-9)  # the first step's loss precedes the bug
    assert _largest_relative_difference(one_weights, summed_weights) > 1e-3


def test_bias_lr_mult_gives_the_biases_their_own_learning_rate(tmp_path, fmnist):
    """optim.bias_lr_mult 2 (the Caffe model's): biases step at twice the rate, still without weight decay;
    BatchNorm's parameters and the weights keep the base rate."""
    model = build_model("googlenet_bn", num_classes=10, width=0.25)
    decay, others, biases = param_groups(model, 2e-4, 2.0)
    assert decay["weight_decay"] == 2e-4 and "lr_mult" not in decay
    names = {id(p): n for n, p in model.named_parameters()}
    assert biases["lr_mult"] == 2.0 and biases["weight_decay"] == others["weight_decay"] == 0
    assert all(names[id(p)].endswith(".bias") for p in biases["params"])
    assert all(".bn." in names[id(p)] for p in others["params"])
    cfg = tiny_config(fmnist, tmp_path / "run", **{"optim.bias_lr_mult": "2", "run.max_steps": "1"})
    train(cfg)
    groups = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"]
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 1.0, 2.0] and groups[2]["lr"] == 2 * groups[0]["lr"]


def test_the_steady_state_step_reads_nothing_back_from_the_device(fmnist, tmp_path, monkeypatch):
    """Between log points a step reads no tensor on the host (each such read would wait for a GPU): every way a
    tensor's value reaches Python is counted while steps run, and a log point then reads them all at once."""
    run = setup(tiny_config(fmnist, tmp_path / "run", **{"run.log_every": "4"}))
    loader = iter(train_loader(run.train_data, 16, 0, 1, 0, 0)[0])
    batches = [next(loader) for _ in range(3)]
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _n=name, _r=real, **k: reads.append(_n) or _r(self, *a, **k)
        )
    for images, targets in batches:
        train_step(run, images, targets, 0.05)
    assert reads == [], reads
    monkeypatch.undo()
    window = run.record.read()
    assert window.finite == 3 and window.skipped == [] and 0 < window.loss < 10


def test_cpu_amp_runs_the_convolutions_in_bfloat16_and_keeps_float32_weights(fmnist, tmp_path):
    """run.cpu_amp: the step's convolutions run under bfloat16 autocast on the CPU (off: float32), the weights and
    their updates stay float32, and the first loss of the same weights and batch agrees with float32's to
    bfloat16's precision: 8 significant bits (relative rounding 2^-9 = 0.2%) per operation over ~60 layers, as a
    random walk ~1.5%; bounded at 5%."""
    seen: dict[str, set] = {}
    first = {}
    for amp in ("false", "true"):
        run = setup(tiny_config(fmnist, tmp_path / amp, **{"run.cpu_amp": amp}))
        conv = next(m for m in run.model.modules() if isinstance(m, nn.Conv2d))
        seen[amp] = set()
        conv.register_forward_hook(lambda _m, _i, out, _s=seen[amp]: _s.add(out.dtype))
        images, targets = next(iter(train_loader(run.train_data, 16, 0, 1, 0, 0)[0]))
        train_step(run, images, targets, 0.05)
        first[amp] = run.record.read().loss
        assert {p.dtype for p in run.model.parameters()} == {torch.float32}
    assert seen == {"false": {torch.float32}, "true": {torch.bfloat16}}
    assert first["true"] == pytest.approx(first["false"], rel=0.05)


def test_compiled_training_gives_eagers_losses(fmnist, tmp_path, monkeypatch):
    """run.compile (torch.compile, inductor on the CPU) trains with the losses of eager mode: each loss is a float32
    reduction over the network, which inductor reorders, so they agree to a few float32 ulps a layer (~100 layers,
    eps 1.2e-7), carried through three SGD steps at lr 0.05: 1e-4 relative. (Inductor draws dropout masks from its
    own generator unless told to use eager's: told here, so that the same units are dropped.) The paper's variant
    (LRN): BatchNorm over 16 images of 4x4 to 1x1 maps divides by batch variances near zero, which amplifies any
    rounding difference without bound (googlenet_bn's third losses differed by 1% here, its first by 2e-7)."""
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    losses = {}
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        options = {"run.compile": compiled, "run.max_steps": "3", "optim.polyak": "off", "model.name": "googlenet"}
        train(tiny_config(fmnist, out, **options))
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[compiled] = [r["loss"] for r in records if r["kind"] == "step"]
    assert len(losses["true"]) == 3
    for eager, compiled in zip(losses["false"], losses["true"], strict=True):
        assert compiled == pytest.approx(eager, rel=1e-4)


def test_the_step_benchmark_runs_on_the_cpu():
    """Eager only: the compiled step is test_compiled_training_gives_eagers_losses's (compiling again here would
    cost the suite another ~2 minutes)."""
    benchmark = [str(ROOT / "benchmarks" / "train_step.py"), "--device", "cpu", "--quick", "--no-compile", "--json"]
    done = subprocess.run(
        [sys.executable, *benchmark],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["setting"] for r in lines] == ["step eager", "loader + step"]
    assert all(r["batch"] == 8 and r["images_per_s"] > 0 for r in lines)
