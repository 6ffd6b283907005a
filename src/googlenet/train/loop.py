"""The training engine (section 6): SGD with momentum 0.9, the 4%-every-8-epochs schedule, Polyak averaging,
checkpoints that resume exactly, on one process or many under torchrun; what is trained is a `Task`, the
registered one the config names (`task:`, train/tasks.py)."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from googlenet.data import Augmented, SkipUnreadable, Transformed, train_loader, unreadable
from googlenet.evaluate.driver import inference_on_dataset
from googlenet.model import ModelMeta
from googlenet.train import distributed
from googlenet.train.checkpoint import (
    RunStopped,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_atomic,
)
from googlenet.train.config import CONFIG, TrainConfig
from googlenet.train.plot import plot_curves, read_metrics
from googlenet.train.run import Run
from googlenet.train.schedule import lr_for
from googlenet.train.steps import StepRecord, Window
from googlenet.train.task import (
    CHECKPOINT,
    METRICS,
    PLOT,
    RESULTS,
    UNREADABLE,
    Task,
    resolve_model,
    weights_record,
)
from googlenet.train.tasks import task_spec


def param_groups(model: nn.Module, weight_decay: float, bias_lr_mult: float = 1.0) -> list[dict]:
    """Weight decay on conv/linear weights only: biases and BatchNorm parameters (all 1-D) get none. With
    `bias_lr_mult` other than 1 the biases form their own group at that multiple of the learning rate (the
    Caffe model's lr_mult 2), apart from BatchNorm's parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    if bias_lr_mult == 1:  # two groups, as checkpoints from before the option have them
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    biases = [p for name, p in model.named_parameters() if p.ndim <= 1 and name.endswith(".bias")]
    kept = {id(p) for p in biases}
    others = [p for p in model.parameters() if p.ndim <= 1 and id(p) not in kept]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": others, "weight_decay": 0.0},
        {"params": biases, "weight_decay": 0.0, "lr_mult": bias_lr_mult},
    ]


def make_averaged(model: nn.Module, mode: str) -> AveragedModel | None:
    """Polyak averaging: a copy of the model (torch.optim.swa_utils.AveragedModel, its BatchNorm statistics
    averaged too) that `update_average` moves after each step; its step count on the model's device."""
    if mode == "off":
        return None
    averaged = AveragedModel(model, use_buffers=True)
    averaged.n_averaged = averaged.n_averaged.to(next(model.parameters()).device)
    return averaged


def update_average(averaged: AveragedModel, model: nn.Module, mode: str, decay: float, bad: torch.Tensor) -> None:
    """One Polyak step, on the device (AveragedModel.update_parameters reads its count on the host each step): an
    exponential moving average whose decay ramps up as min(decay, (1 + n) / (10 + n)), so that short runs are not
    dominated by the initial weights, or the plain mean of all steps; the first copies; a skipped step (`bad`)
    changes nothing."""
    n = averaged.n_averaged.double()
    weight = 1 / (n + 1) if mode == "mean" else 1 - ((1 + n) / (10 + n)).clamp(max=decay)
    weight = torch.where(n == 0, torch.ones_like(weight), weight) * (1 - bad[0].double())
    mine = [*averaged.module.parameters(), *averaged.module.buffers()]
    theirs = [*model.parameters(), *model.buffers()]
    floats = [(a, c) for a, c in zip(mine, theirs, strict=True) if a.is_floating_point()]
    if floats:
        lerp = torch._foreach_lerp_  # one kernel per tensor group; the weight stays on the device
        lerp([a.detach() for a, _ in floats], [c.detach() for _, c in floats], weight.float())  # type: ignore[call-overload]
    for a, c in zip(mine, theirs, strict=True):
        if not a.is_floating_point():  # BatchNorm's step counts, averaged as numbers and rounded down as before
            a.copy_(a + (c - a) * weight)
    averaged.n_averaged += (1 - bad[0]).long()


def _epoch_loader(run: Run, done: int) -> torch.utils.data.DataLoader:
    """This process's batches for the rest of the current epoch, after the `done` steps a resumed run did."""
    loader, sampler = train_loader(
        run.train_data,
        run.per_rank_batch,
        run.ctx.rank,
        run.ctx.world_size,
        run.cfg.data.workers,
        run.cfg.run.seed,
        pin_memory=run.ctx.device.type == "cuda",
        collate_fn=run.task.collate,
        sampler=run.task.sampler(run.parts.train_set, run.cfg, run.context, run.steps_per_epoch),
    )
    sampler.set_epoch(run.epoch)
    sampler.skip = done * run.per_rank_batch
    return loader


def _progress(run: Run, done: int) -> tqdm:
    return tqdm(
        total=(run.steps_per_epoch - done) * run.cfg.data.batch_size,
        unit="img",
        unit_scale=True,
        desc=f"epoch {run.epoch + 1}/{run.cfg.optim.epochs}",
        disable=not run.ctx.is_main,
        dynamic_ncols=True,
        mininterval=1 if sys.stderr.isatty() else 30,
    )


def train_one_epoch(run: Run) -> bool:
    """One epoch (or its remainder after a resume). Returns False when max_steps stopped it early."""
    cfg, opt = run.cfg, run.cfg.optim
    done = run.step - run.epoch * run.steps_per_epoch
    loader = _epoch_loader(run, done)
    run.net.train()
    tick = time.perf_counter()
    with _progress(run, done) as bar:
        for images, targets in loader:
            lr = lr_for(run.step, opt, run.steps_per_epoch)
            output = train_step(run, images, targets, lr)
            bar.update(cfg.data.batch_size)
            if run.step % cfg.run.log_every == 0:
                stats = run.task.batch_stats(output, targets)
                now = time.perf_counter()
                log_step(run, lr, stats, now - tick, bar)
                tick = now
            if cfg.run.checkpoint_every and run.step % cfg.run.checkpoint_every == 0:
                save_state(run)
            stop_if_asked(run, every=cfg.run.log_every)
            if run.cfg.run.max_steps and run.step >= run.cfg.run.max_steps:
                return False
    return True


def train_step(run: Run, images: Any, targets: Any, lr: float) -> Any:
    """One SGD step on a batch, with nothing read back from the device: a non-finite loss skips the update there
    (the fused SGD kernel's found_inf) and is noted in `run.record`, read at log points. Returns the output."""
    cfg, opt = run.cfg, run.cfg.optim
    if run.record is None:
        run.record = StepRecord(run.ctx.device, cfg.run.max_nonfinite, cfg.run.log_every)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    images = run.to_device(images)
    with run.autocast():
        loss, main, output = run.task.loss(run.net, images, targets, cfg)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    bad = run.record.flag(loss, lambda flag: distributed.all_reduce_max_(flag, run.ctx))
    run.optimizer.found_inf = bad  # type: ignore[attr-defined]  # SGD passes it to its fused kernel
    run.optimizer.step()
    if run.averaged is not None and run.step >= opt.polyak_start:
        update_average(run.averaged, run.model, opt.polyak, opt.polyak_decay, bad)
    run.step += 1
    run.record.add(run.step, loss, main, bad)
    return output


def log_step(run: Run, lr: float, stats: dict[str, float], seconds: float, bar: tqdm | None = None) -> None:
    """One `step` line of metrics.jsonl: the mean loss and main loss of the steps since the last line, and the
    task's batch statistics, as means over the global batch, not just this process's share of it. Reads what
    the steps left on the device (`read_steps`), and checks the unreadable-data limit."""
    window = read_steps(run)
    check_unreadable(run)
    total, main_total, *sums = distributed.all_reduce_sum([window.loss, window.main, *stats.values()], run.ctx)
    batch = run.cfg.data.batch_size
    run.log(
        {
            "kind": "step",
            "step": run.step,
            "epoch": run.epoch,
            "lr": lr,
            "loss": total / run.ctx.world_size,
            "loss_main": main_total / run.ctx.world_size,
            **{k: v / batch for k, v in zip(stats, sums, strict=True)},
            "images_per_s": run.cfg.run.log_every * batch / seconds,
        }
    )
    if bar is not None:
        bar.set_postfix(loss=f"{total / run.ctx.world_size:.3f}", lr=f"{lr:.4g}", refresh=False)


def read_steps(run: Run) -> Window:
    """What the steps since the last read left on the device: each skipped (non-finite) step is logged and warned
    about; run.max_nonfinite of them in a row stop the run (no checkpoint is written while they last)."""
    if run.record is None:
        return Window(float("nan"), float("nan"), 0, [], run.nonfinite, 0)
    window = run.record.read()
    for step, loss in window.skipped:
        run.log({"kind": "skipped", "step": step, "epoch": run.epoch, "reason": f"non-finite loss {loss}"})
        if run.ctx.is_main:
            print(f"step {step}: non-finite loss {loss}, step skipped", file=sys.stderr)
    run.nonfinite = window.in_a_row
    if window.limit_hit:
        raise RunStopped(
            f"stopped: {run.cfg.run.max_nonfinite} non-finite losses in a row (run.max_nonfinite), the last at step "
            f"{window.limit_hit}; the last checkpoint ({_saved(run)}) is intact: lower optim.lr or check the data"
        )
    return window


def _saved(run: Run) -> str:
    return f"{run.out / CHECKPOINT} at step {run.saved_step}" if run.saved_step is not None else "none yet"


def stop_if_asked(run: Run, every: int = 1) -> None:
    """After a SIGTERM or SIGINT on any process: checkpoint, then stop with exit status 128 + the signal. Under
    torchrun the processes agree every `every` steps (a collective the device would wait for), alone every step."""
    if run.ctx.world_size > 1 and run.step % every:
        return
    asked = int(distributed.all_reduce_sum([float(run.stop)], run.ctx)[0])
    if not asked:
        return
    number = run.stop or signal.SIGTERM
    where = f"checkpoint saved: {_saved(run)}" if save_state(run) else f"the checkpoint is kept: {_saved(run)}"
    raise RunStopped(
        f"stopped by {signal.Signals(number).name} at step {run.step}; {where}; continue with --resume", 128 + number
    )


@contextlib.contextmanager
def stop_on_signals(run: Run):
    """SIGTERM (how preemptible clusters give notice) and SIGINT ask the loop to checkpoint and stop after the
    current step; a second SIGINT stops at once."""

    def ask(number: int, frame: Any) -> None:
        if run.stop and number == signal.SIGINT:
            raise KeyboardInterrupt
        run.stop = number

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = {number: signal.signal(number, ask) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def over_limit(run: Run) -> str | None:
    """Why the run must stop when a split holds more unreadable items than data.max_bad_fraction; else None."""
    limit, found = run.cfg.data.max_bad_fraction, unreadable(run.out / UNREADABLE)
    for split, data in (("train", run.train_data), ("val", run.val_data)):
        bad = found.get(split, {})
        if len(bad) > limit * len(data):
            return (
                f"{len(bad)} of {len(data)} {split} items are unreadable ({len(bad) / len(data):.1%}, more than "
                f"data.max_bad_fraction {limit:g}), e.g. {next(iter(bad.values()))}; all in {run.out / UNREADABLE}"
            )
    return None


def check_unreadable(run: Run) -> None:
    """Stop the run (on every process alike) when a split holds more unreadable items than allowed."""
    over = over_limit(run)
    if distributed.all_reduce_sum([float(over is not None)], run.ctx)[0]:
        raise RunStopped(over or "another process found too many unreadable items (see its message)")


def unreadable_files(run: Run) -> dict[str, list[str]]:
    """The files skipped so far, per split."""
    found = unreadable(run.out / UNREADABLE)
    return {split: sorted(set(found.get(split, {}).values())) for split in ("train", "val")}


def report_unreadable(run: Run) -> None:
    """At an epoch end: the files skipped so far in metrics.jsonl (kind `unreadable`), when there are any."""
    files = unreadable_files(run)
    if any(files.values()):
        run.log({"kind": "unreadable", "step": run.step, "epoch": run.epoch, **files})


def save_state(run: Run) -> bool:
    """Checkpoint everything needed to continue exactly (rank 0 writes; every rank's state is identical).

    A failed write (a full disk) keeps the previous checkpoint, warns and lets the run go on: the next
    checkpoint tries again. While non-finite losses last, none is written. Returns whether this one was.
    """
    read_steps(run)  # the skipped steps up to now, and how many of them in a row
    if run.nonfinite:
        return False
    try:
        return _write_state(run) if run.ctx.is_main else True
    finally:
        distributed.barrier(run.ctx)  # every process goes on only once the checkpoint is in place


def _write_state(run: Run) -> bool:
    """Rank 0's part of `save_state`: the checkpoint, written atomically."""
    state = {
        "model": run.model.state_dict(),
        "averaged": run.averaged.state_dict() if run.averaged is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "epoch": run.epoch,
        "rng": rng_state(),
        "config": run.cfg.to_dict(),
        "processes": run.ctx.world_size,
        "task": run.cfg.task,
        "start": run.parts.start.to_json() if run.parts.start is not None else None,
    }
    try:
        save_checkpoint(state, run.out / CHECKPOINT)
    except OSError as err:
        print(f"warning: step {run.step}: {err}", file=sys.stderr)
        return False
    run.saved_step = run.step
    return True


def restore_state(run: Run, state: dict, source: Path) -> None:
    """Continue from a checkpoint; one of another task or model (variant, width, classes) is a one-line
    ValueError."""
    made_by = state.get("task", run.cfg.task)  # checkpoints from before tasks were recorded: this run's
    if made_by != run.cfg.task:
        raise ValueError(
            f"{source} was saved by a {made_by!r} run, not {run.cfg.task!r}: resume it with `googlenet train "
            f"--resume --out {source.parent}`, or train into a new run.out"
        )
    own, saved = run.model.state_dict(), state["model"]
    differ = sorted(
        k for k in own.keys() | saved.keys() if k not in own or k not in saved or own[k].shape != saved[k].shape
    )
    if differ:
        was = (state.get("config") or {}).get("model", {})
        raise ValueError(
            f"{source} was saved by another model ({was.get('name')}, width {was.get('width')}) than this run's "
            f"({run.cfg.model.name}, width {run.cfg.model.width}, {len(run.classes)} classes): {differ[0]} differs; "
            "resume with that run's config, or train into a new run.out"
        )
    run.model.load_state_dict(saved)
    if run.averaged is not None and state["averaged"] is not None:
        run.averaged.load_state_dict(state["averaged"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.epoch = state["step"], state["epoch"]
    run.saved_step = run.step
    set_rng_state(state["rng"])


def setup(cfg: TrainConfig, task: Task | None = None, start: ModelMeta | None = None) -> Run:
    """Data, model, optimizer and averaging for `cfg` and `task` (default: the registered task `cfg.task`), on
    this process's device; `start`: a resumed run's record of the weights it started from (its checkpoint holds
    every weight, so model.weights is not read again)."""
    task = task or task_spec(cfg.task).make()
    ctx = distributed.setup(cfg.run.device)
    if cfg.data.batch_size % ctx.world_size:
        raise ValueError(f"data.batch_size {cfg.data.batch_size} must divide evenly over {ctx.world_size} processes")
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    torch.manual_seed(cfg.run.seed if cfg.run.init_seed is None else cfg.run.init_seed)
    parts = task.build(cfg, start)
    model = parts.model.to(ctx.device, getattr(torch, cfg.run.dtype))
    if cfg.run.init_seed not in (None, cfg.run.seed):  # the paper's ensembles: same start, different sampling
        torch.manual_seed(cfg.run.seed)
    if cfg.run.channels_last:  # faster convolutions with cuDNN and with oneDNN on the CPU (benchmarks/inference.py)
        model = model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if ctx.world_size > 1:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)
    if cfg.run.compile:
        net = cast(nn.Module, torch.compile(net))
    optimizer = torch.optim.SGD(  # fused: one kernel per step that a device-side found_inf can skip
        param_groups(model, cfg.optim.weight_decay, cfg.optim.bias_lr_mult),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        fused=True,
    )
    for group in optimizer.param_groups:  # momentum buffers from zero (what SGD's first step amounts to), so that
        for p in group["params"]:  # a skipped first step leaves them defined
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    log = Path(cfg.run.out) / UNREADABLE
    return Run(
        cfg,
        ctx,
        model,
        net,
        optimizer,
        make_averaged(model, cfg.optim.polyak),
        Augmented(SkipUnreadable(parts.train_set, log, "train"), parts.train_transform, cfg.run.seed, task.joint),
        Transformed(SkipUnreadable(parts.val_set, log, "val"), parts.val_transform, joint=task.joint),
        Path(cfg.run.out),
        task=task,
        parts=parts,
    )


def _open_outputs(run: Run, resumed_step: int) -> None:
    """config.yaml, and metrics.jsonl cut back to the checkpoint's step (lines past it are redone, and the
    `final` record of a run that stopped early is dropped, as is a line that a kill cut short)."""
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / CONFIG).write_text(yaml.safe_dump(run.cfg.to_dict(), sort_keys=False))
    metrics = run.out / METRICS
    kept = []
    if resumed_step and metrics.exists():
        records = read_metrics(metrics)
        kept = [json.dumps(r) for r in records if r["step"] <= resumed_step and r["kind"] != "final"]
    write_atomic(metrics, lambda f: f.write("".join(line + "\n" for line in kept).encode()))  # a kill keeps it
    run.log_file = open(metrics, "a")  # noqa: SIM115 (closed at the end of train())
    if run.cfg.run.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "run.tensorboard needs the tensorboard package: pip install 'googlenet[tensorboard]'"
            ) from None

        run.board = SummaryWriter(str(run.out / "tensorboard"))


def refuse_other_config(state: dict, cfg: TrainConfig, source: Path) -> None:
    """A resume nobody asked for (run.resume auto, a torchrun restart) continues only this config's own run: a
    checkpoint saved under other settings (outside run.*) is a one-line ValueError."""
    saved, now = state.get("config") or {}, cfg.to_dict()
    if saved.get("task", now["task"]) != now["task"]:
        raise ValueError(f"{source} belongs to a {saved['task']!r} run, not {now['task']!r}: train into a new run.out")
    for section, fields in now.items():
        if section in ("run", "task"):
            continue
        for name, value in fields.items():
            was = saved.get(section, {}).get(name, value)
            if was != value:
                raise ValueError(
                    f"{source} belongs to another run ({section}.{name} {was!r} there, {value!r} here): train into "
                    "a new run.out, or pass --resume to continue it with this config"
                )


def log_resume(run: Run, state: dict, restarts: int) -> None:
    """A `resume` line in metrics.jsonl: the step it continues from, torchrun's restart count, and the processes
    before and now (the global batch stays data.batch_size, so the per-process share changes with them)."""
    before = state.get("processes", run.ctx.world_size)
    run.log(
        {
            "kind": "resume",
            "step": run.step,
            "epoch": run.epoch,
            "restart": restarts,
            "processes": run.ctx.world_size,
            "processes_before": before,
            "per_process_batch": run.per_rank_batch,
        }
    )
    if before != run.ctx.world_size:
        print(
            f"{before} process(es) before, {run.ctx.world_size} now: the global batch stays {run.cfg.data.batch_size}, "
            f"{run.per_rank_batch} per process",
            file=sys.stderr,
        )


@torch.no_grad()
def evaluate(run: Run, model: nn.Module) -> dict[str, float]:
    """The task's metrics of `model` on the validation data, summed over all processes: the task says how
    (`Task.evaluation`), the one evaluation driver runs it."""
    model.eval()
    batches, step, evaluator = run.task.evaluation(model, run.val_data, run.cfg, run.context)
    return inference_on_dataset(step, batches, evaluator)[0]


def finish(run: Run, command: str) -> dict[str, Any]:
    """Final evaluation of the averaged and the raw weights, inference weights, plot and results.json."""
    if run.last_eval is not None and run.last_eval[0] == run.step:  # the epoch-end evaluation is this one
        final = run.last_eval[1]
    else:
        final = evaluate(run, run.inference_model())
    raw = evaluate(run, run.model) if run.averaged is not None else final
    results = {
        **final,
        **{f"raw_{key}": raw[key] for key in run.task.raw_keys},
        "step": run.step,
        "epochs": run.cfg.optim.epochs,
        "split": run.cfg.data.val_split,
        "processes": run.ctx.world_size,
        "ranks_identical": distributed.ranks_agree(run.model, run.ctx),
        "command": command,
    }
    if not run.ctx.is_main:
        return results
    results["unreadable"] = unreadable_files(run)
    skipped = sorted({f for files in results["unreadable"].values() for f in files})
    if skipped:
        print(
            f"skipped {len(skipped)} unreadable file(s), listed in {run.out / RESULTS}: {', '.join(skipped[:5])}"
            f"{' ...' if len(skipped) > 5 else ''}",
            file=sys.stderr,
        )
    run.log(
        {
            "kind": "final",
            "step": run.step,
            "epoch": run.epoch,
            **{k: v for k, v in results.items() if isinstance(v, float)},
        }
    )
    cfg = run.cfg
    run.task.export(run.inference_model(), run.parts, cfg, run.out, results)
    plot = plot_curves(run.out / METRICS, run.out / PLOT, title=f"{cfg.model.name} on {cfg.data.dataset}")
    if run.board is not None:  # the curves as the plot draws them, beside the scalars that run.log wrote
        with Image.open(plot) as picture:
            run.board.add_image("curves", np.asarray(picture.convert("RGB")), run.step, dataformats="HWC")
    (run.out / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    return results


def train(
    cfg: TrainConfig, resume: bool = False, command: str | None = None, task: Task | None = None
) -> dict[str, Any]:
    """Train `task` (default: the registered task `cfg.task`) as `cfg` says; with `resume`, continue from the
    checkpoint in run.out. model.name, width and input_size not set in `cfg` come from the initial weights' record
    (`resolve_model`). Returns the final metrics."""
    command = command or shlex.join(["googlenet", *sys.argv[1:]])
    task = task or task_spec(cfg.task).make()  # an unknown task is a one-line error before anything is read
    checkpoint = Path(cfg.run.out) / CHECKPOINT
    restarts = distributed.restart_count()  # a worker group torchrun restarted carries on by itself
    automatic = not resume and (cfg.run.resume == "auto" or restarts > 0)
    state = load_checkpoint(checkpoint) if (resume or automatic) and checkpoint.exists() else None
    start = ModelMeta.from_json(state["start"]) if state is not None and state.get("start") else None
    cfg = resolve_model(cfg, start or weights_record(cfg))
    if automatic and state is not None:
        refuse_other_config(state, cfg, checkpoint)
    resume = resume or automatic
    if state is None:
        (Path(cfg.run.out) / UNREADABLE).unlink(missing_ok=True)  # a fresh run lists its own unreadable files
    run = setup(cfg, task, start)
    try:
        with stop_on_signals(run):
            if state is not None:
                restore_state(run, state, checkpoint)
            if run.ctx.is_main:
                _open_outputs(run, run.step)
                where = f"resuming at step {run.step}" if state else "starting"
                if resume and state is None:
                    where = f"no checkpoint in {run.out} to resume from; starting"
                if restarts:
                    where = f"torchrun restart {restarts}: {where}"
                if state is not None:
                    log_resume(run, state, restarts)
                print(
                    f"{where}: {len(run.train_data)} training images, {run.steps_per_epoch} steps/epoch of "
                    f"{cfg.data.batch_size}, {run.ctx.world_size} process(es) on {run.ctx.device}",
                    file=sys.stderr,
                )
            while run.step < run.total_steps:
                completed = train_one_epoch(run)
                if completed:
                    run.epoch += 1
                    record = evaluate(run, run.inference_model())
                    run.last_eval = (run.step, record)
                    run.log({"kind": "eval", "step": run.step, "epoch": run.epoch, **record})
                    check_unreadable(run)
                    report_unreadable(run)
                save_state(run)
                stop_if_asked(run)
            return finish(run, command)
    finally:
        if run.log_file is not None:
            run.log_file.close()
        if run.board is not None:
            run.board.close()
        distributed.cleanup()
