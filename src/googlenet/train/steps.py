"""What the training steps leave on the device between two reads (the sums of their losses, which of them were
non-finite and skipped, how many of those in a row): kept there, so that no step waits for the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Window:
    """The steps since the previous read, as the host sees them at a read."""

    loss: float  # mean over the finite steps (nan if there were none)
    main: float
    finite: int  # steps whose loss was finite
    skipped: list[tuple[int, float]]  # (step, loss) of each non-finite one
    in_a_row: int  # non-finite steps in a row at the last step
    limit_hit: int  # the step at which `limit` of them in a row were first reached (0: not reached)


class StepRecord:
    """Device tensors that each step updates without reading them (`add`), read all at once (`read`): at log points,
    before a checkpoint and at epoch ends. `bad(loss)` is the step's non-finite flag as a float tensor, agreed by
    every process (`agree`: a max over them), which the optimizer takes as `found_inf` to skip the update."""

    def __init__(self, device: torch.device, limit: int, window: int) -> None:
        self.device, self.limit, self.size = device, limit, max(window, 1)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, main loss, finite steps
        self.bad = torch.zeros(self.size, device=device)
        self.bad_loss = torch.zeros(self.size, device=device)
        self.in_a_row = torch.zeros((), device=device)
        self.limit_hit = torch.zeros((), dtype=torch.long, device=device)
        self.first, self.count = 0, 0  # the first step of this window, and its steps so far

    def flag(self, loss: torch.Tensor, agree) -> torch.Tensor:
        """1.0 where this step's loss is non-finite on any process, else 0.0 (shape (1,), on the device)."""
        return agree((~torch.isfinite(loss.detach().float())).float().reshape(1))

    def add(self, step: int, loss: torch.Tensor, main: torch.Tensor, bad: torch.Tensor) -> None:
        """Step `step` (1-based) with its losses and its flag; nothing is read back."""
        if self.count == self.size:  # more steps than the window holds: the oldest flags are folded in
            self._grow()
        if self.count == 0:
            self.first = step
        good = 1 - bad[0]
        finite = torch.stack([loss.detach().double(), main.detach().double(), torch.ones((), device=self.device)])
        self.sums += torch.where(good > 0, finite, torch.zeros_like(finite))
        self.bad[self.count] = bad[0]
        self.bad_loss[self.count] = loss.detach().float()
        self.in_a_row = (self.in_a_row + 1) * bad[0]
        reached = (self.limit_hit == 0) & (self.in_a_row >= self.limit)
        self.limit_hit = torch.where(reached, torch.full_like(self.limit_hit, step), self.limit_hit)
        self.count += 1

    def _grow(self) -> None:
        self.size *= 2
        self.bad = torch.cat([self.bad, torch.zeros_like(self.bad)])
        self.bad_loss = torch.cat([self.bad_loss, torch.zeros_like(self.bad_loss)])

    def read(self) -> Window:
        """The window since the previous read (one transfer from the device), and a new window."""
        n = self.count
        values = torch.cat(
            [self.sums, self.bad[:n], self.bad_loss[:n], self.in_a_row.reshape(1), self.limit_hit.reshape(1)]
        ).tolist()  # one transfer: torch.cat promotes them all to float64
        loss, main, finite = values[:3]
        flags, losses = values[3 : 3 + n], values[3 + n : 3 + 2 * n]
        skipped = [(self.first + k, losses[k]) for k in range(n) if flags[k]]
        self.sums.zero_()
        self.count = 0
        return Window(
            loss / finite if finite else float("nan"),
            main / finite if finite else float("nan"),
            int(finite),
            skipped,
            int(values[-2]),
            int(values[-1]),
        )
