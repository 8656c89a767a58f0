"""Background tasks that are named, held and awaited: nothing is fire-and-forget.

`asyncio.create_task` alone keeps only a weak reference, so an unheld task can vanish mid-flight,
and its exception is reported only when it is garbage-collected. `spawn` names each task, holds it
until it ends and logs a failure at once; `Tasks` also cancels whatever is left on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

T = TypeVar("T")

log = structlog.get_logger("authproxy.tasks")

# Every task `spawn` started and that has not ended yet: the strong reference the loop lacks.
_RUNNING: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """Run `coro` as a task called `name`, held until it ends; a failure is logged when it happens.

    For a task its starter awaits or cancels itself (a WebSocket pump, a supervisor's keeper). One
    that nobody waits for belongs in a `Tasks`, which cancels it on shutdown.
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("background task failed", task=task.get_name(), error=repr(error))


class Tasks:
    """The tasks of one owner (a proxy, a store), cancelled and awaited by `close`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every task still running and wait for all of them to end."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
