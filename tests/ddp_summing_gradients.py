"""`googlenet` with a deliberately broken DistributedDataParallel: the processes' gradients are summed instead of
averaged (each process's mean over its 8 images, added up: the gradient of 8 samples where it should be 16).
tests/test_train.py runs it under torchrun to show that its comparison of 2 processes with 1 catches such a bug."""

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from googlenet.cli import main


def _sum_hook(state, bucket):
    """All-reduce each gradient bucket with SUM and leave out DDP's division by the number of processes."""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


_init = DistributedDataParallel.__init__


def _broken_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.register_comm_hook(None, _sum_hook)


DistributedDataParallel.__init__ = _broken_init

if __name__ == "__main__":
    raise SystemExit(main())
