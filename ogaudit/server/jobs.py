"""Background jobs: run a long call (an audit, a verification) in a thread, report progress and an ETA, cancel it,
and keep its outcome on disk.

A :class:`Job` wraps ``target(progress, cancel) -> result``; its thread never touches a UI. A UI polls
:meth:`Job.snapshot` (an immutable :class:`JobSnapshot`) from whatever thread it likes. Threads die with the
process, so every job writes its status into its project folder (:meth:`~ogaudit.project.Project.job_file`)
when it starts, at each stage change and when it ends: after a restart the folder still says what happened (a status still "running" with no live job
means the process died mid-run). A :class:`JobRegistry` holds the live jobs of one process by id; the app keeps
one in :func:`ogaudit.server.state.server_state` (never in a cache a client can clear) so that every browser
session, and a refreshed page, finds the same jobs.

One live audit per project folder, whoever starts it: :func:`submit_audit` takes the folder's lock
(:class:`FolderLock`, an ``flock`` on ``job-audit.lock``) before it writes anything, and the job's thread holds it
until it ends. A second submit in this process gets the running job; one from another process (or a registry that
lost track of its jobs) gets :class:`JobBusy`. The kernel drops the lock when the process dies, so a crash leaves
nothing to clean up.

Memory: loaders refuse what their estimates say will not fit (:mod:`ogaudit.data.limits`), but no estimate covers
everything. A job runs in a thread of the app's server, so one that outgrows the machine would take the server,
and every reviewer, down with it. While jobs run, a watchdog (:class:`MemoryWatchdog`) samples the process's
resident memory; above the limit (``OGAUDIT_JOB_MEMORY_LIMIT``, default 85% of the memory this process may use)
it stops every running job at its next cancellation check, or, when a job goes on growing for ``MEMORY_GRACE_S``
without reaching one, raises :class:`MemoryLimitExceeded` inside its thread; either way the job is recorded as
failed with a message that says why. A ``MemoryError`` raised inside a job is reported the same way. The server
stays up.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ogaudit.errors import Cancelled, JobBusy, OgauditError, StorageError
from ogaudit.progress import ProgressCallback
from ogaudit.project import Project
from ogaudit.results import Run
from ogaudit.settings import AuditSettings
from ogaudit.storage import write_json

if TYPE_CHECKING:
    import pandas as pd

    from ogaudit.data.dataset import Dataset

Target = Callable[[ProgressCallback, threading.Event], object]
FINISHED = ("done", "failed", "cancelled")
MEASURED_STAGE_SECONDS = {
    "load": 1.0,
    "train per epoch": 61.1,
    "gradients": 17.5,
    "detect": 1.7,
    "map umap": 49.6,
    "map pca": 3.8,
    "first look": 118.3,
}
"""Seconds per stage of the app's demo (MNIST 5k, small CNN, 10 epochs, UMAP; first look: 1 epoch, PCA), measured
on this project's 2-core machine while it was shared (load average 20-28: every number is several times what a
quiet machine takes; the ratios are what the bar uses). ``benchmarks`` reproduce it with the demo settings."""


def audit_stage_weights(settings: AuditSettings | None = None, *, first_look: bool = False) -> dict[str, float]:
    """The stages of an audit in order, weighted by :data:`MEASURED_STAGE_SECONDS`: training by its epochs (10 when
    chosen by data size), the map by its method; with ``first_look``, the quick first look first."""
    seconds = MEASURED_STAGE_SECONDS
    epochs = (settings.epochs if settings is not None else None) or 10
    method = settings.map_method if settings is not None else "umap"
    weights = {
        "load": seconds["load"],
        "train": seconds["train per epoch"] * epochs,
        "gradients": seconds["gradients"],
        "detect": seconds["detect"],
        "map": seconds["map umap"] if method == "umap" else seconds["map pca"],
    }
    return {FIRST_LOOK: seconds["first look"], **weights} if first_look else weights


FIRST_LOOK = "first look"
AUDIT_STAGE_WEIGHTS = {"load": 1.0, "train": 611.0, "gradients": 17.5, "detect": 1.7, "map": 49.6}
"""The demo's weights (:func:`audit_stage_weights` of 10 epochs and UMAP), for the overall fraction and the ETA of
stages not yet started (the current stage's own pace decides the rest, :func:`stage_eta`)."""
FIRST_LOOK_WEIGHT = MEASURED_STAGE_SECONDS["first look"]


class FolderLock:
    """An exclusive, non-blocking ``flock`` on a project's ``job-<kind>.lock``, held until :meth:`release`.

    Each :class:`FolderLock` opens the file itself, so two in one process exclude each other as two processes do.
    """

    def __init__(self, folder: str | Path, kind: str):
        self.path = Project(folder).job_lock_file(kind)
        self.kind = kind
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`JobBusy` at once."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise StorageError(
                f"Cannot take the lock {str(self.path)!r}: {error.strerror or error}. Choose a project folder that "
                "can be written."
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JobBusy(
                f"An {self.kind} of {self.path.parent.name!r} is already running; wait for it to end or cancel it."
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


@dataclass(frozen=True)
class JobSnapshot:
    """A job's state at one moment.

    fraction : overall progress in [0, 1], stages weighted by ``stage_weights``.
    eta_s : estimated seconds left (None until there is enough progress to extrapolate).
    error, error_stage, error_type, traceback : set when ``status == "failed"``; ``error`` is readable as it is.
    """

    job_id: str
    kind: str
    status: str = "queued"
    stage: str = ""
    stage_fraction: float = 0.0
    fraction: float = 0.0
    message: str = ""
    elapsed_s: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    error_stage: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    stage_seconds: dict[str, float] | None = None
    """Seconds each finished stage took (what the next estimates can be checked against)."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def stage_eta(
    weights: Mapping[str, float],
    stage: str,
    stage_fraction: float,
    stage_elapsed_s: float,
    done_s: Mapping[str, float],
) -> float | None:
    """Seconds left, from the observed rate of the current stage: what is left of it at its pace so far, plus the
    stages after it at the seconds per unit of weight seen so far (finished stages and this one's projection).

    ``weights``: the stages in order with their expected shares (:data:`AUDIT_STAGE_WEIGHTS`); ``done_s``: seconds
    each finished stage took. None while nothing can be extrapolated (under 2% or 1 s into the first stage). A
    stage not in ``weights`` counts as the whole job.
    """
    if stage not in weights:
        return estimate_eta(stage_elapsed_s, stage_fraction)
    names = list(weights)
    later = sum(weights[name] for name in names[names.index(stage) + 1 :])
    done = {name: seconds for name, seconds in done_s.items() if name in weights and name != stage}
    done_weight = sum(weights[name] for name in done)
    if stage_fraction >= 0.02 and stage_elapsed_s >= 1.0:
        projected = stage_elapsed_s / stage_fraction
        rate = (sum(done.values()) + projected) / (done_weight + weights[stage])
        return max(projected - stage_elapsed_s, 0.0) + rate * later
    if done_weight > 0:  # too early in this stage: the pace of the finished ones
        rate = sum(done.values()) / done_weight
        return max(rate * weights[stage] - stage_elapsed_s, 0.0) + rate * later
    return None


def estimate_eta(elapsed_s: float, fraction: float) -> float | None:
    """Seconds left if the rest goes at the pace so far; None before 2% or 1 s of progress (too noisy)."""
    if fraction < 0.02 or elapsed_s < 1.0:
        return None
    return max(elapsed_s * (1.0 - fraction) / fraction, 0.0)


def overall_fraction(weights: Mapping[str, float], stage: str, stage_fraction: float) -> float:
    """Progress over all stages: the weights of the stages before ``stage`` plus its share done.

    Stages run in the order of ``weights``; a stage not in ``weights`` counts as the whole job.
    """
    if stage not in weights:
        return stage_fraction
    names = list(weights)
    total = sum(weights.values())
    before = sum(weights[name] for name in names[: names.index(stage)])
    return min((before + weights[stage] * stage_fraction) / total, 1.0)


def read_status(folder: str | Path, kind: str) -> JobSnapshot | None:
    """The last status a job of ``kind`` wrote to the project ``folder``, or None if none ran there (or the file
    is unreadable)."""
    saved = Project(folder).job_state(kind)
    if saved is None:
        return None
    return JobSnapshot(**{name: saved.get(name) for name in JobSnapshot.__dataclass_fields__ if name in saved})


JOB_MEMORY_LIMIT_ENV = "OGAUDIT_JOB_MEMORY_LIMIT"
JOB_MEMORY_SHARE = 0.85
WATCH_INTERVAL_S = 0.1
MEMORY_GRACE_S = 2.0
"""Seconds a job over the memory limit has to reach its next cancellation check before the watchdog raises
:class:`MemoryLimitExceeded` inside its thread."""


class MemoryLimitExceeded(Cancelled):
    """Raised inside a job's thread by the watchdog (at the thread's next Python instruction) when the job went on
    growing past the memory limit without reaching a cancellation check."""


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def job_memory_limit(environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The resident memory at which running jobs are stopped, and where that figure comes from."""
    from ogaudit.data.limits import format_bytes, parse_size, total_memory

    environ = os.environ if environ is None else environ
    text = environ.get(JOB_MEMORY_LIMIT_ENV, "").strip()
    if text:
        return parse_size(text), f"{JOB_MEMORY_LIMIT_ENV}={text}"
    total = total_memory()
    return int(total * JOB_MEMORY_SHARE), (
        f"{JOB_MEMORY_SHARE:.0%} of the {format_bytes(total)} this machine has; set {JOB_MEMORY_LIMIT_ENV} to change it"
    )


class MemoryWatchdog:
    """One thread per process that, while any job runs, samples the resident memory every ``interval`` seconds
    and stops every running job (:meth:`Job.stop_for_memory`) once it passes the limit."""

    def __init__(self, *, interval: float = WATCH_INTERVAL_S):
        self.interval = interval
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, job: Job) -> None:
        with self._lock:
            self._jobs.add(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ogaudit-memory-watchdog", daemon=True)
                self._thread.start()

    def forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.discard(job)

    def _run(self) -> None:
        while True:
            with self._lock:
                jobs = list(self._jobs)
                if not jobs:
                    self._thread = None
                    return
            rss = resident_bytes()
            for job in jobs:
                if rss > job.memory_limit:
                    job.stop_for_memory(rss)
            time.sleep(self.interval)


WATCHDOG = MemoryWatchdog()


class Job:
    """One call running in a daemon thread, observable and cancellable.

    Parameters
    ----------
    job_id : unique among live jobs of a registry (the app uses ``"<project>/<kind>"``).
    kind : what it does ("audit", "verify"); names the status file.
    target : ``target(progress, cancel)``; its return value becomes :attr:`result`.
    folder : the project folder its status is written to (None: nowhere).
    stage_weights : share of the time per stage name, for :attr:`JobSnapshot.fraction`.
    memory_limit : resident bytes of the process at which the job is stopped (default :func:`job_memory_limit`).
    memory_grace_s : seconds it then has to reach a cancellation check before :class:`MemoryLimitExceeded` is
        raised in its thread.
    lock : a held :class:`FolderLock`, released when the job ends (the job owns it from then on).
    """

    def __init__(
        self,
        job_id: str,
        kind: str,
        target: Target,
        *,
        folder: str | Path | None = None,
        stage_weights: Mapping[str, float] | None = None,
        memory_limit: int | None = None,
        memory_grace_s: float = MEMORY_GRACE_S,
        lock: FolderLock | None = None,
    ):
        self.job_id, self.kind, self.target = job_id, kind, target
        if memory_limit is None:
            self.memory_limit, self._limit_source = job_memory_limit()
        else:
            self.memory_limit, self._limit_source = memory_limit, "this job's memory_limit"
        self._memory_stop: str | None = None
        self._memory_grace_s = memory_grace_s
        self._memory_stop_at = 0.0
        self._target_lock = threading.Lock()  # guards _in_target: an interruption only lands inside the target
        self._in_target = False
        self._thread_ident: int | None = None
        self.lock = lock
        self.folder = None if folder is None else Path(folder)
        self.stage_weights = dict(stage_weights or {})
        self.cancel_event = threading.Event()
        self.result: object = None
        self._lock = threading.Lock()
        self._state = JobSnapshot(job_id, kind)
        self._started: float | None = None
        self._ended: float | None = None
        self._stage_started: float | None = None
        self._stage_seconds: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> Job:
        """Run the target in a new daemon thread; return at once.

        The "queued" status is written before the thread starts, so that nobody reading the folder right after
        a retry sees the previous run's outcome as this one's.
        """
        try:
            self._update(status="queued")
            self._thread = threading.Thread(target=self.run, name=f"ogaudit-job-{self.job_id}", daemon=True)
            self._thread.start()
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return self

    def run(self) -> None:
        """Run the target in this thread, capturing its outcome (never raises); release the folder's lock."""
        try:
            self._run()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> None:
        self._started = time.monotonic()
        self._update(status="running")
        self._thread_ident = threading.get_ident()
        WATCHDOG.watch(self)
        try:
            try:
                with self._target_lock:
                    self._in_target = True
                result = self.target(self._progress, self.cancel_event)
            finally:
                with self._target_lock:
                    self._in_target = False
        except Cancelled as error:
            if self._memory_stop:
                self._finish(status="failed", error=self._memory_stop, error_type="MemoryLimit")
            else:
                self._finish(status="cancelled", message=str(error))
        except MemoryError:
            self._finish(
                status="failed",
                error=(
                    "The job ran out of memory (an allocation failed) and was stopped; the server stays up. Use "
                    "fewer or smaller samples, or run it on a machine with more memory."
                ),
                error_type="MemoryError",
            )
        except OgauditError as error:
            self._finish(status="failed", error=str(error), error_type=type(error).__name__)
        except Exception as error:  # noqa: BLE001 - anything a job raises must reach the person, not kill the app
            self._finish(
                status="failed",
                error=f"{type(error).__name__}: {error}",
                error_type=type(error).__name__,
                traceback=traceback.format_exc(),
            )
        else:
            self.result = result
            if self._memory_stop:  # stopped after its last check: what it made stands
                self._update(message=self._memory_stop, persist=False)
            self._finish(status="done", message="done", stage_fraction=1.0)
        finally:
            WATCHDOG.forget(self)

    def stop_for_memory(self, resident: int) -> None:
        """Stop the job at its next cancellation check, because the process holds ``resident`` bytes, over
        :attr:`memory_limit` (called by the watchdog)."""
        from ogaudit.data.limits import format_bytes

        if self._memory_stop is None:
            self._memory_stop = (
                f"Stopped during the {self._state.stage or 'first'} stage: the server's memory reached "
                f"{format_bytes(resident)}, over the limit of {format_bytes(self.memory_limit)} "
                f"({self._limit_source}), before it could take the server down. A run it did not finish is never "
                "shown as finished. Use fewer or smaller samples, lower OGAUDIT_MEMORY_BUDGET so that loading "
                "refuses such data up front, or run it on a machine with more memory."
            )
            self._memory_stop_at = time.monotonic()
            self.cancel_event.set()
        elif time.monotonic() - self._memory_stop_at > self._memory_grace_s:
            self._interrupt()  # still growing, and no cancellation check reached: stop it where it is
            self._memory_stop_at = time.monotonic()

    def _interrupt(self) -> None:
        """Raise :class:`MemoryLimitExceeded` in the job's thread at its next Python instruction, if it is still
        inside its target (a call in C, such as one numpy operation, finishes first)."""
        with self._target_lock:
            if self._in_target and self._thread_ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._thread_ident), ctypes.py_object(MemoryLimitExceeded)
                )

    def cancel(self) -> None:
        """Ask the target to stop at its next check; the status becomes "cancelled" when it does."""
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        """Block until the thread ends (or ``timeout`` seconds pass); return the snapshot."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> JobSnapshot:
        """The current state, with elapsed time and ETA computed now."""
        with self._lock:
            state = self._state
        if self._started is None:
            return state
        now = self._ended or time.monotonic()
        elapsed = now - self._started
        if state.finished:
            eta = None
        elif self.stage_weights:
            in_stage = now - (self._stage_started or self._started)
            eta = stage_eta(self.stage_weights, state.stage, state.stage_fraction, in_stage, self._stage_seconds)
        else:
            eta = estimate_eta(elapsed, state.fraction)
        return replace(state, elapsed_s=elapsed, eta_s=eta, stage_seconds=dict(self._stage_seconds))

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        with self._lock:
            new_stage = stage != self._state.stage
            if new_stage:
                now = time.monotonic()
                if self._state.stage and self._stage_started is not None:
                    previous = self._state.stage
                    self._stage_seconds[previous] = self._stage_seconds.get(previous, 0.0) + now - self._stage_started
                self._stage_started = now
        self._update(
            stage=stage,
            stage_fraction=fraction,
            fraction=overall_fraction(self.stage_weights, stage, fraction),
            message=message,
            persist=new_stage,
        )

    def _finish(self, **changes) -> None:
        self._ended = time.monotonic()
        with self._lock:
            if self._state.stage and self._stage_started is not None:
                stage = self._state.stage
                self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + self._ended - self._stage_started
                self._stage_started = None
        if changes.get("status") == "failed":
            changes["error_stage"] = self._state.stage or None
            if self._state.stage == FIRST_LOOK:  # name the stage inside it: "quick first look, load: …"
                inner = self._state.message.removeprefix("quick first look, ").split(":", 1)[0].strip()
                changes["error_stage"] = inner or FIRST_LOOK
        if changes.get("status") == "done":
            changes["fraction"] = 1.0
        self._update(**changes)

    def _update(self, *, persist: bool = True, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
        if persist and self.folder is not None:
            try:
                write_json(Project(self.folder).job_file(self.kind), asdict(self.snapshot()))
            except StorageError as error:  # a full disk must not kill the job's thread: the live state still holds
                with self._lock:
                    self._state = replace(self._state, message=f"status not saved to disk: {error}")


class JobRegistry:
    """The live jobs of this process, by id. Thread-safe; one instance is shared by every UI session."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job) -> Job:
        """Start ``job`` unless a job with its id is still running; return the job that runs under that id."""
        with self._lock:
            current = self._jobs.get(job.job_id)
            if current is not None and not current.snapshot().finished:
                return current
            self._jobs[job.job_id] = job
        return job.start()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def live(self, job_id: str) -> Job | None:
        """The job under ``job_id`` if it has not ended, else None."""
        job = self.get(job_id)
        return job if job is not None and not job.snapshot().finished else None


def job_id(project: str | Path, kind: str) -> str:
    """The id of a project's job of ``kind``: one live audit and one live verification per project."""
    return f"{Path(project).name}/{kind}"


def delete_project(root: str | Path, name: str, registry: JobRegistry | None = None) -> Path:
    """Remove the project folder ``name`` of the workspace ``root`` and everything in it; return the folder.

    Safe against what a visitor may send and against running work: ``name`` must be a plain project name
    (:func:`~ogaudit.server.sandbox.check_project_name`: no separator, no ``..``), the folder must be a real
    folder directly inside ``root`` (a symlink is refused, never followed), no live audit or verification of it may
    be in ``registry``, and the folder's audit lock (:class:`FolderLock`) is held while it is removed, so an audit
    of another process, or one starting meanwhile, is never deleted under it. ``shutil.rmtree`` removes links
    inside the folder without following them.

    Raises :class:`~ogaudit.errors.DataError` for a bad name or a folder that is missing or not inside ``root``;
    :class:`~ogaudit.errors.JobBusy` while a job of the project runs; :class:`~ogaudit.errors.StorageError` when
    the folder cannot be removed. Who may delete is the caller's rule
    (:func:`~ogaudit.server.auth.may_delete_project`).
    """
    import shutil

    from ogaudit.errors import DataError
    from ogaudit.server.sandbox import check_project_name

    check_project_name(name)
    workspace = Path(root).resolve()
    folder = workspace / name
    if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != workspace:
        raise DataError(f"There is no project {name!r} in the workspace to delete.")
    for kind in ("audit", "verify"):
        if registry is not None and registry.live(job_id(folder, kind)) is not None:
            raise JobBusy(f"The {kind} of {name!r} is still running: cancel it first, then delete the project.")
    lock = FolderLock(folder, "audit").acquire()  # JobBusy: an audit of another process holds it
    try:
        shutil.rmtree(folder)
    except OSError as error:
        raise StorageError(f"Could not delete the project {name!r} completely: {error.strerror or error}.") from error
    finally:
        lock.release()
    return folder


PREVIEW_EPOCHS = 1
PREVIEW_ABOVE_EPOCHS = 4


def preview_settings(settings: AuditSettings) -> AuditSettings | None:
    """The quick first look an audit with ``settings`` starts with: one epoch and a PCA map (seconds on a CPU),
    or None when the audit itself is quick (at most ``PREVIEW_ABOVE_EPOCHS`` epochs and no UMAP)."""
    quick = settings.epochs is not None and settings.epochs <= PREVIEW_ABOVE_EPOCHS
    if quick and settings.map_method in ("pca", "none"):
        return None
    return replace(settings, epochs=PREVIEW_EPOCHS, map_method="pca" if settings.map_method != "none" else "none")


def submit_audit(
    registry: JobRegistry,
    project: str | Path,
    data: str,
    settings: AuditSettings,
    *,
    cache_dir: str | Path | None = None,
    preview: bool = True,
    by: str | None = None,
) -> Job:
    """Audit ``data`` with ``settings`` into the project folder ``project``, in the background; ``by``: the name
    of the user who asked, kept in the request (:func:`delete_project` lets them remove a failed project).

    The request is saved first, so a failed or interrupted audit can be run again; the results land in the
    project as :meth:`~ogaudit.project.Project.write_run` writes them. :attr:`Job.result` is the folder, not the
    in-memory result, so that a finished job holds no arrays.

    With ``preview`` and no finished run in the folder yet, the job first writes a quick first look
    (:func:`preview_settings`) that the app shows while the full audit runs; the full run then replaces it
    (``run.json`` switches in one rename) and the review's decisions stay, the samples being the same.
    """
    from ogaudit.pipeline.run import audit

    project = Project(project)
    running = registry.live(job_id(project.path, "audit"))
    if running is not None:
        return running  # before anything is written: the running audit keeps its request
    lock = FolderLock(project.path, "audit").acquire()  # JobBusy: another process, or another registry, runs it
    try:
        project.write_request(data, settings, by=by)
        first_look = preview_settings(settings) if preview and not project.is_finished() else None
    except BaseException:
        lock.release()
        raise

    inner = audit_stage_weights(first_look) if first_look is not None else {}

    def target(progress: ProgressCallback, cancel: threading.Event) -> Path:
        if first_look is not None:

            def quiet(stage: str, fraction: float, message: str) -> None:
                # one stage of the bar, filled by the first look's own stages (it has an ETA of its own)
                share = overall_fraction(inner, stage, fraction)
                progress(FIRST_LOOK, share, f"quick first look, {stage}: {message}")

            audit(data, first_look, out_dir=project, cache_dir=cache_dir, progress=quiet, cancel=cancel)
        audit(data, settings, out_dir=project, cache_dir=cache_dir, progress=progress, cancel=cancel)
        return project.path

    job = Job(
        job_id(project.path, "audit"),
        "audit",
        target,
        folder=project.path,
        stage_weights=audit_stage_weights(settings, first_look=first_look is not None),
        lock=lock,
    )
    submitted = registry.submit(job)
    if submitted is not job:  # cannot happen while we hold the lock, but never leak it
        lock.release()
    return submitted


def submit_verify(registry: JobRegistry, run: Run, dataset: Dataset, decisions: pd.DataFrame, *, seeds: int = 3) -> Job:
    """Retrain before and after the review's decisions (the paper's trim-and-retrain check) in the background.

    ``run`` is an opened :class:`~ogaudit.project.Run`, ``dataset`` its data and ``decisions`` the ledger's
    :meth:`~ogaudit.review.ledger.Ledger.state`; both models are trained with ``seeds`` seeds. The report is saved
    in the project (:meth:`~ogaudit.project.Project.write_verify`), where ``ogaudit verify`` saves it too.
    """
    from ogaudit.review.verify import verify_cleaning

    project = Project(run.path)

    def target(progress: ProgressCallback, cancel: threading.Event):
        report = verify_cleaning(
            dataset,
            decisions,
            run.settings,
            flagged_ids=run.flagged_ids,
            seeds=seeds,
            progress=progress,
            cancel=cancel,
        )
        project.write_verify(report, decided=len(decisions))
        return report

    return registry.submit(Job(job_id(run.path, "verify"), "verify", target, folder=run.path))
