"""What one new session costs the server: Gradio's own SessionState against demo/sessions.py's LeanSessionState.

    python bench/bench_sessions.py [--sessions 300]

Builds the real page (app.py, which loads the default model), then creates `--sessions` sessions of each kind
for the page and prints the time per new session (p50 of the creations, in turns) and the memory each one keeps
(tracemalloc). Every request over the plain HTTP API without a session hash is a new session; the server keeps
up to STATE_SESSION_CAPACITY of them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300, help="sessions of each kind (default: %(default)s)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    import gradio.state_holder

    gradio_session = gradio.state_holder.SessionState  # before app.py switches the server to lean sessions
    import app
    from demo.sessions import LeanSessionState
    from demo.ui import STATE_SESSION_CAPACITY

    kinds = {"gradio SessionState": gradio_session, "LeanSessionState": LeanSessionState}
    times = {name: [] for name in kinds}
    for _ in range(args.sessions):
        for name, kind in kinds.items():
            start = time.perf_counter()
            kind(app.demo)
            times[name].append((time.perf_counter() - start) * 1000)
    print(f"one new session · page of {len(app.demo.blocks)} blocks · {args.sessions} sessions of each kind")
    print(f"{'kind':22s} {'p50 ms':>8s} {'KiB kept':>9s} {'x capacity':>11s}")
    for name, kind in kinds.items():
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        sessions = [kind(app.demo) for _ in range(args.sessions)]
        kept = (tracemalloc.get_traced_memory()[0] - before) / len(sessions) / 1024
        tracemalloc.stop()
        del sessions
        print(f"{name:22s} {statistics.median(times[name]):8.2f} {kept:9.1f} {kept * STATE_SESSION_CAPACITY / 1024:8.0f} MB")


if __name__ == "__main__":
    main()
