"""`Registry`: the one shape of every registry of parts (training tasks, proposal methods, export formats and their
loaders, dataset layouts, learning-rate schedules): a dict by name whose `register` refuses to rebind a name."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """Parts of one `kind`, by name. Plain dict reads (`in`, `[name]`, iteration) are what the CLI's choices and
    the configs' checks use; `register` adds a part, `get_part` looks one up with a one-line error."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, part: T) -> T:
        """Add `part` as `name` (the same part again is a no-op; another part under a taken name is an error)."""
        if name in self and self[name] != part:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self[name] = part
        return part

    def get_part(self, name: str) -> T:
        """The part called `name`; an unknown name is a ValueError listing the known ones."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self)}")
        return self[name]
