"""torchrun's elastic side on this CPU (gloo, one thread per process): two nodes on one host train like one
process, a worker group that torchrun restarts after a SIGKILL resumes by itself to the weights of an uninterrupted
run, and an elastic run that loses a node finishes on the other with the global batch kept.

Each run is the paper variant (no BatchNorm, no dropout: nothing depends on the per-process batch) in float64, so
two runs over the same global batches differ by rounding alone (the bound of the torchrun equivalence test in
tests/test_train.py: 1e-9 of the weights' size)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_train import PAPER_F64, ROOT, _largest_relative_difference, _torchrun, tiny

OVERRIDES = PAPER_F64
LONG = {"optim.epochs": "3", "run.checkpoint_every": "2"}  # 18 steps, a checkpoint every 2


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent(data_root, out, torchrun_args, log: Path, **extra) -> subprocess.Popen:
    """One torchrun agent (a node) in its own process group, training on the tiny Fashion-MNIST stand-in."""
    overrides = tiny(data_root, out, **{**OVERRIDES, **extra})
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_args,
        "-m",
        "googlenet",
        "train",
        *[f"--{k}={v}" for k, v in overrides.items()],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as output:  # the agent keeps its own copy of the file
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True, text=True
        )


def _nodes(port: int, nnodes: str, node: int, *more: str, conf: str = "") -> list[str]:
    """torchrun's arguments for `node` of a c10d rendezvous on this host: node 0 hosts the store, as `is_host` says
    (left to torchrun, two agents on one host race for it)."""
    endpoint = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=elastic-test"]
    settings = ",".join(filter(None, [f"is_host={int(node == 0)}", conf]))
    return [f"--nnodes={nnodes}", "--nproc-per-node=1", *endpoint, f"--rdzv-conf={settings}", *more]


def _start_nodes(data_root, out, port: int, nnodes: str, logs: list[Path], *more: str, conf: str = "", **extra):
    """Two agents, the second started once the first's rendezvous store takes connections."""
    first = _agent(data_root, out, _nodes(port, nnodes, 0, *more, conf=conf), logs[0], **extra)
    deadline = time.monotonic() + 60
    while first.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return [first, _agent(data_root, out, _nodes(port, nnodes, 1, *more, conf=conf), logs[1], **extra)]


def _finish(process: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, log.read_text()[-4000:]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def _wait_for(out: Path, step: int, processes: list[subprocess.Popen], logs: list[Path], timeout: float = 120) -> None:
    """Until metrics.jsonl logs `step` and a checkpoint is on disk; else fails with the agents' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        metrics = out / "metrics.jsonl"
        if (out / "checkpoint.pt").exists() and metrics.exists() and f'"step": {step},' in metrics.read_text():
            return
        time.sleep(0.02)
    ended = [
        f"{log.name} (exit {p.poll()}):\n{log.read_text()[-3000:]}" for p, log in zip(processes, logs, strict=True)
    ]
    raise AssertionError(f"step {step} was not reached\n" + "\n".join(ended))


def _workers(agent: subprocess.Popen) -> list[int]:
    """The training processes torchrun `agent` started (its children running googlenet)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == agent.pid and b"googlenet" in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import make_fashion_mnist

    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


def test_elastic_two_nodes_on_one_host_train_like_one_process(data, tmp_path):
    port, out = _port(), tmp_path / "two-nodes"
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    agents = _start_nodes(data, out, port, "2", logs)
    for agent, log in zip(agents, logs, strict=True):
        _finish(agent, log)
    one, _, one_weights = _torchrun(1, data, tmp_path / "one")
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["ranks_identical"] is True and results["step"] == one["step"]
    assert _largest_relative_difference(one_weights, _weights(out)) < 1e-9


def test_elastic_restart_after_a_killed_worker_resumes_by_itself(data, tmp_path):
    """--max-restarts 1: a worker SIGKILLed after a checkpoint; torchrun restarts the group, which resumes from the
    checkpoint by itself and ends where an uninterrupted two-process run ends."""
    out, log = tmp_path / "restarted", tmp_path / "restarted.log"
    agent = _agent(data, out, ["--standalone", "--nproc-per-node=2", "--max-restarts=1"], log, **LONG)
    _wait_for(out, 7, [agent], [log])
    workers = _workers(agent)
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGKILL)
    _finish(agent, log)
    resumed = [r for r in _records(out) if r["kind"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["restart"] == 1 and resumed[0]["processes"] == 2
    assert 6 <= resumed[0]["step"] < 18 and "torchrun restart 1: resuming at step" in log.read_text()
    steps = [r["step"] for r in _records(out) if r["kind"] == "step"]
    assert steps == list(range(1, 19))  # the steps after the checkpoint are logged once, by the resumed run
    uninterrupted = tmp_path / "uninterrupted"
    log2 = tmp_path / "uninterrupted.log"
    _finish(_agent(data, uninterrupted, ["--standalone", "--nproc-per-node=2"], log2, **LONG), log2)
    assert _largest_relative_difference(_weights(uninterrupted), _weights(out)) < 1e-9


def test_elastic_run_that_loses_a_node_finishes_on_the_other(data, tmp_path):
    """--nnodes 1:2: the second node is killed (agent and worker) after a checkpoint; the first restarts alone,
    resumes with the whole global batch in its one process, and ends with the weights of a run over the same
    global batches (one process throughout)."""
    port, out = _port(), tmp_path / "elastic"
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    # Both must join the first round: the second agent is started once the first's store is up and needs a few
    # seconds to import torch and join (3 s of last call were too few on a 2-core Zen 3 running the whole suite:
    # it came late, the first restarted for it and the new round timed out); after the loss, 10 s alone.
    conf = "last_call_timeout=10,join_timeout=60"
    agents = _start_nodes(data, out, port, "1:2", logs, "--max-restarts=2", conf=conf, **LONG)
    _wait_for(out, 5, agents, logs)
    workers = _workers(agents[1])  # torchrun starts its workers in sessions of their own
    assert len(workers) == 1
    os.killpg(agents[1].pid, signal.SIGKILL)  # the node that does not host the rendezvous: agent and worker
    os.kill(workers[0], signal.SIGKILL)
    agents[1].wait()
    _finish(agents[0], logs[0])
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 1 and results["step"] == 18
    resumed = [r for r in _records(out) if r["kind"] == "resume"]
    assert resumed and resumed[-1]["processes"] == 1 and resumed[-1]["processes_before"] == 2
    assert resumed[-1]["per_process_batch"] == 16  # the global batch kept: 2 x 8 before, 1 x 16 now
    alone = tmp_path / "alone"
    log3 = tmp_path / "alone.log"
    _finish(_agent(data, alone, ["--standalone", "--nproc-per-node=1"], log3, **LONG), log3)
    assert _largest_relative_difference(_weights(alone), _weights(out)) < 1e-9


def test_elastic_resume_auto_continues_and_refuses_another_runs_checkpoint(data, tmp_path, capsys):
    """run.resume auto (for schedulers that requeue jobs) continues from run.out's checkpoint as --resume does, with
    a `resume` line in metrics.jsonl; a checkpoint saved under other settings is refused in one line."""
    from googlenet.train import config as train_config
    from googlenet.train.loop import train

    out = tmp_path / "requeued"
    first = train(train_config.load(None, tiny(data, out, **{**OVERRIDES, **LONG, "run.max_steps": "7"})))
    assert first["step"] == 7
    again = train(train_config.load(None, tiny(data, out, **{**OVERRIDES, **LONG, "run.resume": "auto"})))
    assert again["step"] == 18
    resumed = [r for r in _records(out) if r["kind"] == "resume"]
    assert [(r["step"], r["restart"], r["processes"]) for r in resumed] == [(7, 0, 1)]
    assert "resuming at step 7" in capsys.readouterr().err
    other = tiny(data, out, **{**OVERRIDES, **LONG, "run.resume": "auto", "optim.lr": "0.02"})
    with pytest.raises(ValueError, match=r"belongs to another run \(optim.lr 0.01 there, 0.02 here\)"):
        train(train_config.load(None, other))
