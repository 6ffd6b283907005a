"""The registry of training tasks: each task's name (the config's `task:`, recorded in config.yaml and the
checkpoint, so that any run resumes by itself), the command that documents it and how to make it. A task's
module registers it (`register_task`); the installed ones are found through the `googlenet.tasks` entry points
(pyproject.toml), so the engine imports no task's room. Their names are known without importing them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from googlenet.registry import Registry

if TYPE_CHECKING:
    from googlenet.train.task import Task

ENTRY_POINTS = "googlenet.tasks"  # each entry: a task's name = the TaskSpec its module registers


@dataclass(frozen=True)
class TaskSpec:
    """A training task: `name` as written in configs, and `make` () -> a fresh `Task`. Its config section, if
    it has one, is registered apart (train/config.py), so that `--help` lists the options without importing it."""

    name: str
    make: Callable[[], Task]


_TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task (a name may be registered once; the same spec again is a no-op). Returns `spec`."""
    return _TASKS.register(spec.name, spec)


def task_names() -> list[str]:
    """Every task's name: the installed ones (entry points, not imported) and any registered in this process."""
    names = [entry.name for entry in entry_points(group=ENTRY_POINTS)]
    return [*names, *(name for name in _TASKS if name not in names)]


def task_spec(name: str) -> TaskSpec:
    """The task called `name` (its module imported where it is an installed one); an unknown one is a one-line
    ValueError listing the known ones."""
    if name not in _TASKS:
        for entry in entry_points(group=ENTRY_POINTS, name=name):
            register_task(entry.load())
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; tasks are {', '.join(task_names())}")
    return _TASKS[name]
