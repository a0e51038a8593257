"""Background jobs: a thread runs the call, progress and ETA are reported, cancel works, errors keep their stage,
and the outcome is on disk."""

from __future__ import annotations

import threading
import time

import pytest

from ogaudit.errors import DataError, JobBusy
from ogaudit.pipeline.run import AuditSettings
from ogaudit.progress import check_cancel
from ogaudit.project import Project, Request
from ogaudit.server.jobs import (
    AUDIT_STAGE_WEIGHTS,
    FolderLock,
    Job,
    JobRegistry,
    audit_stage_weights,
    delete_project,
    estimate_eta,
    job_id,
    overall_fraction,
    read_status,
    stage_eta,
    submit_audit,
    submit_verify,
)

FAST = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1, limit=300)


def test_overall_fraction_weighs_stages_in_order():
    weights = {"a": 1.0, "b": 3.0}
    assert overall_fraction(weights, "a", 0.5) == pytest.approx(0.125)
    assert overall_fraction(weights, "b", 0.0) == pytest.approx(0.25)
    assert overall_fraction(weights, "b", 1.0) == pytest.approx(1.0)
    assert overall_fraction(weights, "unknown", 0.4) == pytest.approx(0.4)


def test_eta_extrapolates_the_pace_so_far():
    assert estimate_eta(10.0, 0.25) == pytest.approx(30.0)
    assert estimate_eta(10.0, 0.01) is None
    assert estimate_eta(0.5, 0.5) is None


def test_the_eta_follows_the_current_stages_own_pace():
    weights = {"load": 1.0, "train": 12.0, "map": 4.0}
    # training runs at 100 s per weight unit (half of 12 units in 600 s): 600 s left in it, then 4 units of map
    assert stage_eta(weights, "train", 0.5, 600.0, {"load": 100.0}) == pytest.approx(600 + (100 + 1200) / 13 * 4)
    # the case: a stage slower than its weight said does not leave "26 min left" with 5 to go
    slow = stage_eta(weights, "train", 0.9, 1800.0, {"load": 10.0})
    assert slow == pytest.approx(200 + (10 + 2000) / 13 * 4)
    # too early in a stage: the finished stages' pace; before any: nothing to say
    assert stage_eta(weights, "train", 0.0, 0.5, {"load": 10.0}) == pytest.approx(10 * 12 - 0.5 + 10 * 4)
    assert stage_eta(weights, "load", 0.01, 0.5, {}) is None
    assert stage_eta(weights, "other", 0.25, 10.0, {}) == pytest.approx(30.0)


def test_stage_weights_come_from_measured_seconds_and_the_settings():
    demo = audit_stage_weights(AuditSettings(epochs=10, map_method="umap"))
    assert demo == pytest.approx(AUDIT_STAGE_WEIGHTS, rel=0.01)
    assert demo["train"] / sum(demo.values()) > 0.85  # training is most of the demo's time, as measured
    quick = audit_stage_weights(AuditSettings(epochs=1, map_method="pca"), first_look=True)
    assert list(quick) == ["first look", "load", "train", "gradients", "detect", "map"]
    assert quick["map"] < demo["map"] and quick["train"] == pytest.approx(demo["train"] / 10)


def test_job_runs_in_a_thread_and_reports_progress_and_eta(tmp_path):
    reported, release = threading.Event(), threading.Event()
    threads = []

    def target(progress, cancel):
        threads.append(threading.current_thread())
        progress("load", 1.0, "loaded")
        time.sleep(1.1)
        progress("train", 0.5, "epoch 1/2")
        reported.set()
        release.wait(10)
        return 42

    job = Job("p/audit", "audit", target, folder=tmp_path, stage_weights=AUDIT_STAGE_WEIGHTS).start()
    assert reported.wait(10)
    snap = job.snapshot()
    assert snap.status == "running" and snap.stage == "train" and snap.message == "epoch 1/2"
    assert snap.stage_fraction == 0.5
    assert snap.fraction == pytest.approx(overall_fraction(AUDIT_STAGE_WEIGHTS, "train", 0.5))
    assert snap.elapsed_s >= 1.0 and snap.eta_s is not None and snap.eta_s > 0
    assert read_status(tmp_path, "audit").stage == "train"  # a stage change is written at once
    release.set()
    done = job.wait(10)
    assert threads[0] is not threading.main_thread()
    assert done.status == "done" and done.fraction == 1.0 and done.eta_s is None
    assert done.stage_seconds["load"] >= 1.0  # measured, and saved with the status
    assert job.result == 42
    assert read_status(tmp_path, "audit").status == "done"


def test_cancel_stops_the_job(tmp_path):
    started = threading.Event()

    def target(progress, cancel):
        progress("train", 0.1, "epoch 1")
        started.set()
        while True:
            check_cancel(cancel)
            time.sleep(0.01)

    job = Job("p/audit", "audit", target, folder=tmp_path).start()
    assert started.wait(10)
    job.cancel()
    snap = job.wait(10)
    assert snap.status == "cancelled" and snap.finished
    assert read_status(tmp_path, "audit").status == "cancelled"


@pytest.mark.parametrize(
    ("error", "kind", "has_traceback"),
    [(DataError("no such data"), "DataError", False), (RuntimeError("boom"), "RuntimeError", True)],
)
def test_an_exception_is_captured_with_its_stage(tmp_path, error, kind, has_traceback):
    def target(progress, cancel):
        progress("load", 0.0, "starting")
        progress("gradients", 0.3, "forward pass")
        raise error

    snap = Job("p/audit", "audit", target, folder=tmp_path).start().wait(10)
    assert snap.status == "failed" and snap.error_stage == "gradients" and snap.error_type == kind
    assert str(error) in snap.error
    assert (snap.traceback is not None) == has_traceback
    saved = read_status(tmp_path, "audit")
    assert saved.status == "failed" and saved.error_stage == "gradients" and saved.error == snap.error


def test_registry_keeps_one_live_job_per_id():
    release = threading.Event()
    registry = JobRegistry()
    first = registry.submit(Job("p/audit", "audit", lambda progress, cancel: release.wait(10)))
    second = registry.submit(Job("p/audit", "audit", lambda progress, cancel: None))
    assert second is first and registry.get("p/audit") is first
    release.set()
    first.wait(10)
    third = registry.submit(Job("p/audit", "audit", lambda progress, cancel: None))
    assert third is not first and third.wait(10).status == "done"
    assert registry.get("nothing") is None


def test_audit_job_writes_its_results_to_the_project(tmp_path, cache_dir):
    project = tmp_path / "proj"
    project.mkdir()
    stages = []
    job = submit_audit(JobRegistry(), project, "digits", FAST, cache_dir=cache_dir)
    assert job.job_id == job_id(project, "audit") == "proj/audit"
    while not job.snapshot().finished:
        stages.append(job.snapshot().stage)
        time.sleep(0.05)
    snap = job.wait()
    assert snap.status == "done", snap.error
    assert job.result == project and Project(project).is_finished()
    assert Project(project).read_request() == Request("digits", FAST)
    assert read_status(project, "audit").status == "done"
    assert set(stages) <= {"", "load", "train", "gradients", "detect", "map"}


def test_audit_job_error_names_the_stage(tmp_path, cache_dir):
    job = submit_audit(JobRegistry(), tmp_path / "bad", str(tmp_path / "missing"), FAST, cache_dir=cache_dir)
    snap = job.wait(60)
    assert snap.status == "failed" and snap.error_stage == "load" and snap.error_type == "DataError"
    assert "neither a built-in" in snap.error


def test_verify_job_retrains_before_and_after_and_saves_the_report(finished_project, copy_of):
    folder, result = finished_project
    run = Project(copy_of(folder, "proj")).open_run()
    ledger = Project(run.path).open_ledger()
    ledger.decide(run.flagged_ids[:5], "remove", annotator="ann")
    job = submit_verify(JobRegistry(), run, result.dataset, ledger.state())
    snap = job.wait(120)
    assert snap.status == "done", snap.error
    assert snap.stage == "verify"
    saved = Project(run.path).read_verify()
    assert saved["decided"] == 5 and saved["held_out"] == 60 and 0 <= saved["accuracy_after"] <= 1
    assert saved["accuracy_before"] == job.result.accuracy_before and "held-out accuracy" in saved["text"]


def test_an_audit_starts_with_a_quick_first_look_then_replaces_it(tmp_path, cache_dir, monkeypatch):
    import ogaudit.pipeline.run
    from ogaudit.project import Project
    from ogaudit.server.jobs import preview_settings, submit_audit
    from ogaudit.settings import AuditSettings

    settings = AuditSettings(epochs=3, limit=200, map_method="umap")
    assert preview_settings(settings).epochs == 1 and preview_settings(settings).map_method == "pca"
    assert preview_settings(AuditSettings(epochs=4, map_method="pca")) is None
    assert preview_settings(AuditSettings(map_method="pca")).epochs == 1  # epochs by data size: maybe many
    real, calls = ogaudit.pipeline.run.audit, []

    def spy(data, chosen, **kwargs):
        calls.append((chosen.epochs, chosen.map_method, Project(kwargs["out_dir"]).is_finished()))
        return real(data, chosen, **kwargs)

    monkeypatch.setattr(ogaudit.pipeline.run, "audit", spy)
    settings = AuditSettings(epochs=5, limit=200, map_method="pca")
    job = submit_audit(JobRegistry(), tmp_path / "p", "digits", settings, cache_dir=cache_dir)
    job.wait(300)
    assert job.snapshot().status == "done"
    assert calls == [(1, "pca", False), (5, "pca", True)]  # the first look was readable while the full audit ran
    assert Project(tmp_path / "p").open_run().settings.epochs == 5
    again = submit_audit(JobRegistry(), tmp_path / "p", "digits", settings, cache_dir=cache_dir)
    again.wait(300)
    assert calls[2:] == [(5, "pca", True)]  # a finished project is re-audited without a first look


# ---------------------------------------------------------------- the memory watchdog (issue 25, finding 4)


def test_a_job_that_outgrows_the_memory_limit_is_stopped_with_a_message_and_the_server_stays_up(tmp_path):
    """What no loader's estimate covers: a job whose memory keeps growing. The watchdog stops it at its next
    check, records it as failed with the reason, and the process (the app's server) goes on."""
    from ogaudit.server.jobs import resident_bytes

    held: list[bytearray] = []

    def greedy(progress, cancel):
        progress("load", 0.0, "reading")
        for _ in range(400):  # up to 4 GB if nothing stops it
            check_cancel(cancel)
            held.append(bytearray(10 * 1024**2))  # touched: resident
            time.sleep(0.005)
        return "finished"

    start = resident_bytes()
    limit = start + 200 * 1024**2
    snap = Job("p/audit", "audit", greedy, folder=tmp_path, memory_limit=limit).start().wait(60)
    grown = len(held) * 10
    held.clear()
    assert snap.status == "failed" and snap.error_type == "MemoryLimit", snap
    assert "Stopped during the load stage: the server's memory reached" in snap.error
    assert "over the limit of" in snap.error and snap.traceback is None
    assert 200 <= grown < 600  # stopped soon after the limit, far from the 4 GB it would have taken
    assert Project(tmp_path).job_state("audit")["error_type"] == "MemoryLimit"
    after = Job("p/audit", "audit", lambda progress, cancel: "ok", folder=tmp_path).start().wait(10)
    assert after.status == "done"  # the next job runs: the process is fine


def test_a_memory_error_inside_a_job_is_a_clear_failure(tmp_path):
    def boom(progress, cancel):
        raise MemoryError

    snap = Job("p/audit", "audit", boom, folder=tmp_path).start().wait(10)
    assert snap.status == "failed" and snap.error_type == "MemoryError"
    assert "ran out of memory" in snap.error and "the server stays up" in snap.error


def test_the_job_memory_limit_follows_the_machine_or_the_setting(monkeypatch):
    from ogaudit.data import limits
    from ogaudit.server.jobs import job_memory_limit

    monkeypatch.setattr(limits, "total_memory", lambda: 10 * 1024**3)
    assert job_memory_limit({})[0] == int(10 * 1024**3 * 0.85)
    assert job_memory_limit({"OGAUDIT_JOB_MEMORY_LIMIT": "3G"}) == (3 * 1024**3, "OGAUDIT_JOB_MEMORY_LIMIT=3G")


def test_a_job_that_never_checks_for_cancellation_is_interrupted_in_its_thread(tmp_path):
    """A loop that grows and never reaches a check (a loader's own loop): after the grace period the watchdog
    raises MemoryLimitExceeded inside the job's thread, and the job fails with the same message."""
    from ogaudit.server.jobs import resident_bytes

    held: list[bytearray] = []

    def deaf(progress, cancel):
        progress("load", 0.0, "reading")
        for _ in range(300):  # up to 3 GB if nothing stops it; never looks at cancel
            held.append(bytearray(10 * 1024**2))
            time.sleep(0.02)
        return "finished"

    limit = resident_bytes() + 150 * 1024**2
    job = Job("p/audit", "audit", deaf, folder=tmp_path, memory_limit=limit, memory_grace_s=0.3)
    snap = job.start().wait(60)
    grown = len(held) * 10
    held.clear()
    assert snap.status == "failed" and snap.error_type == "MemoryLimit", snap
    assert "the server's memory reached" in snap.error and snap.traceback is None
    assert grown < 600, grown  # stopped within the grace period, far from the 3 GB it would have taken
    assert not job._in_target


def test_a_failed_audit_keeps_who_started_it_and_its_project_can_be_deleted(tmp_path, cache_dir):
    root = tmp_path / "home"
    job = submit_audit(JobRegistry(), root / "bad", str(tmp_path / "missing"), FAST, cache_dir=cache_dir, by="ana")
    assert job.wait(60).status == "failed"
    assert Project(root / "bad").read_request() == Request(str(tmp_path / "missing"), FAST, "ana")
    assert delete_project(root, "bad") == (root / "bad").resolve()
    assert not (root / "bad").exists() and root.is_dir()  # the project only, never the workspace


def test_deleting_a_project_refuses_paths_links_and_running_jobs(tmp_path):
    root, outside = tmp_path / "home", tmp_path / "outside"
    (root / "p").mkdir(parents=True)
    (outside / "keep").mkdir(parents=True)
    (root / "p" / "link").symlink_to(outside, target_is_directory=True)  # a link inside: removed, not followed
    (root / "alias").symlink_to(outside, target_is_directory=True)  # a project that is a link: refused
    for name in ("../outside", "/tmp", "..", ".hidden", "alias", "missing"):
        with pytest.raises(DataError):
            delete_project(root, name)
    held = FolderLock(root / "p", "audit").acquire()  # an audit of another process runs in it
    with pytest.raises(JobBusy, match="already running"):
        delete_project(root, "p")
    held.release()
    registry, release = JobRegistry(), threading.Event()
    registry.submit(Job("p/verify", "verify", lambda progress, cancel: release.wait(10), folder=root / "p"))
    with pytest.raises(JobBusy, match="cancel it first"):
        delete_project(root, "p", registry)
    release.set()
    registry.get("p/verify").wait(10)
    delete_project(root, "p", registry)
    assert not (root / "p").exists() and (outside / "keep").is_dir() and (root / "alias").is_symlink()
