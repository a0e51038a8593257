"""Helpers for the app's tests: start ``streamlit run app.py`` (through ``ogaudit.ui.serve``, as scripts/app.sh
does) on a free port for headless chromium (Debian's ``/usr/bin/chromium`` only; never ``playwright install``), and
wait for a background job as the page would.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ogaudit.server.jobs import Job, read_status

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
REPO = Path(__file__).resolve().parents[1]
NEEDS_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


@contextmanager
def launched_chromium() -> Iterator:
    """Debian's headless chromium through playwright (the browser fixtures of ``tests/ui``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def choose_option(page, combobox, name: str, *, shown_in=None, tries: int = 4) -> None:
    """Open ``combobox`` (a Streamlit selectbox or multiselect), click its option ``name`` and close the list.

    A rerun that lands while the list is open re-draws the widget and closes the list (or drops the choice), so
    the pick is tried again, the page settled in between, until ``shown_in`` (the widget's container) shows
    ``name`` as chosen; the last failure is raised.
    """
    for attempt in range(tries):
        page.wait_for_selector(READY)
        try:
            combobox.click(timeout=15_000)
            page.get_by_role("option", name=name, exact=True).click(timeout=10_000)
            page.keyboard.press("Escape")
            page.wait_for_selector(READY)
            if shown_in is None:
                return
            shown_in.get_by_text(name, exact=True).first.wait_for(timeout=10_000)
            return
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(env: dict[str, str], log_path: Path, *, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """Start the app with ``env`` (its log in ``log_path``); return the process and its URL once it is healthy."""
    port = free_port()
    command = [sys.executable, "-m", "ogaudit.ui.serve", str(REPO / "app.py"), "--server.headless", "true"]
    command += ["--server.address", "127.0.0.1", "--server.port", str(port)]
    command += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(log_path.read_text()) from None
            time.sleep(0.3)


def stop_app(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(20)


def wait_for_job(project: Path, kind: str = "audit", timeout: float = 180) -> None:
    """What the polling fragment does in a browser: wait until the job's status file says it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = read_status(project, kind)
        if snap is not None and snap.finished:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the {kind} job in {project} did not finish in {timeout} s")


@contextmanager
def held_audit(project: Path, stage: str, fraction: float, message: str) -> Iterator[Job]:
    """An audit job of ``project`` in the app's registry that reports ``stage`` at ``fraction`` and then waits
    until the block ends (as a long training would), so a test can look at the page while it runs."""
    from ogaudit.ui import state

    release = threading.Event()

    def slow(progress, cancel):
        progress(stage, fraction, message)
        release.wait(30)

    job = state.job_registry().submit(Job(f"{project.name}/audit", "audit", slow, folder=project))
    try:
        yield job
    finally:
        release.set()
        job.wait(10)
