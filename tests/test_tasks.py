"""`tasks.spawn`: a task is named, held while it runs, and its failure is logged when it happens."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from structlog.testing import capture_logs

from authproxy.tasks import Tasks, spawn


async def test_a_failure_is_logged_by_name_at_once_and_still_reaches_the_starter() -> None:
    async def pump() -> None:
        raise ConnectionResetError("peer went away")

    with capture_logs() as logs:
        task = spawn(pump(), name="ws-to-upstream:demo")
        await asyncio.wait([task])  # ended; nobody has looked at its result yet
        assert logs == [
            {
                "event": "background task failed",
                "task": "ws-to-upstream:demo",
                "error": "ConnectionResetError('peer went away')",
                "log_level": "error",
            }
        ]
    assert task.get_name() == "ws-to-upstream:demo"
    with pytest.raises(ConnectionResetError):
        await task


async def test_a_task_whose_handle_is_dropped_is_held_until_it_ends() -> None:
    """The loop itself keeps only a weak reference: a task waiting on a future that nothing else
    holds would be collected mid-flight, its `finally` never run."""
    ended = asyncio.Event()

    async def waits_forever() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            ended.set()

    alive = weakref.ref(spawn(waits_forever(), name="unheld"))
    await asyncio.sleep(0)  # it runs up to its await
    gc.collect()
    task = alive()
    assert task is not None
    task.cancel()
    await asyncio.wait_for(ended.wait(), 10.0)


async def test_a_cancelled_task_is_no_failure_and_close_ends_what_is_left() -> None:
    owned = Tasks()
    with capture_logs() as logs:
        owned.spawn(asyncio.sleep(3600), name="sleeper")
        cancelled = spawn(asyncio.sleep(3600), name="cancelled")
        cancelled.cancel()
        await owned.close()
        await asyncio.gather(cancelled, return_exceptions=True)
    assert len(owned) == 0
    assert logs == []
