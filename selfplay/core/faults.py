"""Kill points for crash tests: `point(name)` SIGKILLs this process at the Nth time it passes
the named point, when SELFPLAY_KILL_AT="name:N" is set. Unset (always, outside tests), it is one
dict lookup. SIGKILL, like `kill -9`, runs no handler, no `finally` and no flush: exactly the crash
a resume must survive (tests/run/test_faults.py)."""
from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("SELFPLAY_KILL_AT")
    if not spec:
        return
    target, _, count = spec.rpartition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count):
        os.kill(os.getpid(), signal.SIGKILL)
