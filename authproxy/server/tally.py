"""One set of numbers for `serve --workers N`: every worker's counts, summed by the supervisor.

A worker scraped for `/-/metrics` or `/-/status` sends `gather`; the supervisor asks every
listening worker for its counts (`report`) and answers with their sum (gateway/metrics.merge),
whichever worker asked. The last counts of a worker that exited are kept and added in, so a
counter never goes backwards while the supervisor runs; what a killed worker counted after its
last report is lost. A worker that does not report in time counts with its last report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from authproxy.gateway.metrics import merge, no_counts, retired
from authproxy.server.channel import Message
from authproxy.server.worker_process import Worker
from authproxy.tasks import Tasks


class Tally:
    def __init__(self, workers: Callable[[], Iterable[Worker]]) -> None:
        self._workers = workers
        self._retired = no_counts()
        self._tasks = Tasks()

    def retire(self, worker: Worker) -> None:
        """Keep what an exited worker counted: its replacement starts again from zero."""
        if worker.last_counts is not None:
            self._retired = merge([self._retired, retired(worker.last_counts)])
            worker.last_counts = None

    def on_message(self, worker: Worker, message: Message) -> None:
        if message.get("t") == "gather":
            self._tasks.spawn(self._gather(worker, message.get("id")), name="gather")

    async def _gather(self, asker: Worker, ask: object) -> None:
        listening = [w for w in self._workers() if w.ready.done() and w.ready.result()]
        await asyncio.gather(*(worker.report() for worker in listening))
        latest = [w.last_counts for w in self._workers() if w.last_counts is not None]
        asker.send({"t": "gathered", "id": ask, "counts": merge([self._retired, *latest])})

    async def close(self) -> None:
        await self._tasks.close()
