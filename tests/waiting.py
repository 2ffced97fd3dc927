"""wait_until: poll a condition with a deadline (for external processes that cannot notify us)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Return the first truthy predicate() result; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(interval)


async def wait_until_async(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02,
                           blocking: bool = False) -> T:
    """wait_until for coroutines: polls without blocking the event loop the servers run on
    (a `blocking` predicate, e.g. one doing HTTP, runs in a worker thread)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(predicate) if blocking else predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
