"""Test-only method: the process exits abruptly (like a segfault or OOM kill) when its loss is built."""

from __future__ import annotations

import os

from surrogate_bench.plugins.contracts import LossFn, Method, Task


class ExitNow(Method):
    """Calls ``os._exit(3)`` in make_loss — only ever run it in a worker process."""

    name = "exit-now"
    params = {"code": 3}

    def make_loss(self, task: Task) -> LossFn:
        os._exit(int(self.p["code"]))
