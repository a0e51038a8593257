"""How long the app's demo audit takes on this machine: the first look and the whole run (issue 26).

Runs :func:`ogaudit.server.jobs.submit_audit` with the demo's settings (:class:`ogaudit.ui.config.DemoConfig`, the
same call the app makes on an empty workspace) into a fresh project and cache, and prints when the quick first look
was written, each stage's seconds and the total, with the load average before and after (the machine may be shared).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_demo.py [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ogaudit.project import Project
from ogaudit.server.jobs import JobRegistry, submit_audit
from ogaudit.ui.config import DemoConfig


def one_run(demo: DemoConfig) -> dict:
    root = Path(tempfile.mkdtemp(prefix="ogaudit-demo-"))
    project = root / demo.project_name
    start = time.perf_counter()
    job = submit_audit(JobRegistry(), project, demo.data, demo.settings(), cache_dir=root / "cache")
    first_look = None
    while not (snapshot := job.snapshot()).finished:
        if first_look is None and Project(project).is_finished():
            first_look = time.perf_counter() - start
        time.sleep(0.2)
    return {
        "status": snapshot.status,
        "first_look_s": first_look,
        "total_s": time.perf_counter() - start,
        "stages_s": snapshot.stage_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    demo = DemoConfig.from_env()
    for run in range(args.runs):
        load_before = os.getloadavg()[0]
        result = one_run(demo)
        stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in (result["stages_s"] or {}).items())
        first = f"{result['first_look_s']:.1f} s" if result["first_look_s"] is not None else "none"
        print(
            f"run {run}: {result['status']}, first look after {first}, done after {result['total_s']:.1f} s "
            f"(stages, s: {stages}); load average {load_before:.1f} → {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
