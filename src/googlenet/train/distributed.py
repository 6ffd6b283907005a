"""torchrun detected from the environment: synchronous data parallelism (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from googlenet.evaluate.driver import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the torchrun process group if there is one; pick this process's device."""
    use_cuda = resolve_device(device, "run.device") == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        rank = int(os.environ["RANK"])
        store, _, _ = next(dist.rendezvous("env://", rank, world))
        # torchrun keeps its store when it restarts a worker group: the new group's keys get their own prefix, or
        # its processes read the dead group's addresses and fail to connect (pytorch/pytorch#167288)
        store = dist.PrefixStore(f"googlenet/restart_{restart_count()}", store)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", store=store, rank=rank, world_size=world)
    rank = dist.get_rank() if world > 1 else 0
    return Context(rank, world, torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"))


def all_reduce_sum(values: list[float], ctx: Context) -> list[float]:
    """Sum `values` over all processes (a no-op for one process)."""
    if ctx.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(ctx: Context) -> None:
    """Wait until every process gets here (nothing for one process)."""
    if ctx.world_size > 1:
        dist.barrier()


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (TORCHELASTIC_RESTART_COUNT; 0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def all_reduce_max_(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """`tensor`, in place, as the elementwise maximum over all processes, without a wait on the host (NCCL
    enqueues it on the device); the tensor itself for one process."""
    if ctx.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def ranks_agree(model: torch.nn.Module, ctx: Context) -> bool:
    """Whether every process holds exactly the same weights (a fingerprint of each tensor, compared)."""
    if ctx.world_size == 1:
        return True
    fingerprint = torch.stack([t.detach().double().sum() for t in model.state_dict().values()]).to(ctx.device)
    gathered = [torch.empty_like(fingerprint) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, fingerprint)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
