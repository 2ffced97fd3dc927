"""Every warm-up step runs without error (warm_up() only logs failures, so a stale kernel call
would otherwise go unnoticed until the first request compiles it)."""

from __future__ import annotations

import pytest

from edge_agent.warmup import WARM_UP_STEPS


@pytest.mark.parametrize("step", WARM_UP_STEPS, ids=lambda step: step.__name__)
def test_warm_up_step_runs(step: object) -> None:
    step()  # type: ignore[operator]
