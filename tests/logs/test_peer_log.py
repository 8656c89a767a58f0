"""Warnings about anonymous peers: a few lines per address per window, then one summary."""

from __future__ import annotations

import asyncio
from typing import Any

from authproxy.logs.peer_log import PeerLog


class Lines:
    """A structlog-shaped logger that keeps what it was asked to log."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))


async def test_each_peer_gets_a_few_lines_per_window_then_one_summary() -> None:
    now = [0.0]
    lines = Lines()
    peer_log = PeerLog(lines, per_peer=3, window=60.0, max_peers=2, clock=lambda: now[0])
    for _ in range(10):
        peer_log.log("10.0.0.1", "rejected a malformed request", status=400)
    peer_log.log("10.0.0.2", "closed a stalled connection", level="info")
    for index in range(100):  # more addresses than are tracked: counted, never stored
        peer_log.log(f"10.1.0.{index}", "rejected a malformed request")
    assert [(level, fields["peer"]) for level, _, fields in lines.lines] == [
        ("warning", "10.0.0.1"),
        ("warning", "10.0.0.1"),
        ("warning", "10.0.0.1"),
        ("info", "10.0.0.2"),
    ]
    now[0] = 61.0
    peer_log.log("10.0.0.1", "rejected a malformed request")
    _level, event, fields = lines.lines[4]
    assert event == "repeated warnings from peers were held back"
    assert fields["held"] == {"rejected a malformed request": 107}
    assert fields["peers"] == 2  # 10.0.0.1 and "other peers"
    assert lines.lines[5][2]["peer"] == "10.0.0.1"  # a new window: its lines come through again
    assert len(lines.lines) == 6


async def test_the_summary_comes_when_the_window_ends_without_further_events() -> None:
    lines = Lines()
    peer_log = PeerLog(lines, per_peer=1, window=0.05)
    peer_log.log("10.0.0.1", "rejected a malformed request")
    peer_log.log("10.0.0.1", "rejected a malformed request")
    for _ in range(200):
        if len(lines.lines) == 2:
            break
        await asyncio.sleep(0.01)
    assert lines.lines[1][1] == "repeated warnings from peers were held back"
    assert lines.lines[1][2]["held"] == {"rejected a malformed request": 1}
