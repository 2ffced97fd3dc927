"""Start-up objects leave the cyclic GC's scans (edge_agent.gc_freeze); later garbage is still collected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.server_process import REPO, ServerProcess
from tests.test_http_write import http
from tests.waiting import wait_until

CHILD = """
import gc, json, weakref
from edge_agent.gc_freeze import freeze_start_up_objects
class Node: pass
kept = [Node() for _ in range(1000)]
frozen = freeze_start_up_objects()
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the freeze
probe = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"frozen": frozen, "count": gc.get_freeze_count(), "cycle_collected": probe() is None}))
"""


def test_freeze_counts_start_up_objects_and_later_cycles_are_collected() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["frozen"] == report["count"] > 1000
    assert report["cycle_collected"] is True


def test_a_started_server_reports_frozen_objects(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d", "--fsync", "never") as server:
        def frozen() -> int:
            checks = json.loads(http("GET", server.url + "/health")[2])["checks"]
            return next(c for c in checks if c["name"] == "python_gc")["stats"]["frozen"]

        assert wait_until(frozen, 60, "start-up objects frozen once the warm-up is done") > 10_000
