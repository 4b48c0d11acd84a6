"""Built-in tasks: one registry of names. `get_task("digits")`, `task_names()`, `TASKS` (the names).

The sequence family's tasks live in `rnnedge.tasks.builtin`; other families bring theirs in their registry entry
(`Family.tasks`: the seq2seq family's `dates`); `register_task(name, factory)` adds one by hand.
The interface (TaskData, Task, metrics) is `rnnedge.tasks.base`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from rnnedge.errors import BadInputError
from rnnedge.tasks.base import IGNORE, SPLITS, Predict, Task, TaskData

__all__ = ["IGNORE", "SPLITS", "Predict", "Task", "TaskData", "get_task", "register_task", "task_names", "TASKS"]

_FACTORIES: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Make `get_task(name)` build its task with `factory()` (a family calls this when it registers)."""
    _FACTORIES[name] = factory


def _loaded() -> dict[str, Callable[[], Task]]:
    from rnnedge.families.registry import load_families
    from rnnedge.tasks.builtin import BUILTIN

    for name, factory in BUILTIN.items():
        _FACTORIES.setdefault(name, factory)
    for family in load_families().values():
        for name, factory in family.tasks.items():
            _FACTORIES.setdefault(name, factory)
    return _FACTORIES


def task_names() -> tuple[str, ...]:
    """Every registered task name, built-in ones first."""
    return tuple(_loaded())


@functools.cache
def get_task(name: str) -> Task:
    """The task called `name` (one shared instance per name)."""
    factories = _loaded()
    if name not in factories:
        raise BadInputError(f"unknown task {name!r}; choose one of {', '.join(factories)}")
    return factories[name]()


def __getattr__(name: str) -> Any:
    if name == "TASKS":  # computed on first use: families register their tasks when loaded
        return task_names()
    raise AttributeError(f"module 'rnnedge.tasks' has no attribute {name!r}")
