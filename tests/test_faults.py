"""Faults and the hostile inputs not covered elsewhere: a job killed with SIGKILL resumes from what is on disk, a
failed job can be retried, a full disk or a read-only folder is a clear error that leaves nothing looking complete,
and damaged arrays, images and archives are refused by name. ``docs/RELIABILITY.md`` maps every case to its test."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from appserver import wait_for_job
from PIL import Image
from streamlit.testing.v1 import AppTest

from ogaudit import storage
from ogaudit.data.load import load_dataset
from ogaudit.data.uploads import unpack_zip
from ogaudit.errors import DataError, LedgerError, StorageError
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.project import Project
from ogaudit.review.ledger import Ledger
from ogaudit.server.jobs import JobRegistry, read_status, submit_audit

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
FAST = AuditSettings(epochs=2, map_method="pca", noise_rate=0.1, limit=300)


@pytest.fixture
def app_home(tmp_path, monkeypatch) -> Path:
    """A workspace with a placeholder project (so the demo does not start) and an empty model cache."""
    home = tmp_path / "home"
    (home / "placeholder").mkdir(parents=True)
    monkeypatch.setenv("OGAUDIT_HOME", str(home))
    monkeypatch.setenv("OGAUDIT_CACHE", str(tmp_path / "cache"))
    st.cache_resource.clear()
    return home


def start(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["annotator"] = "alice"
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ---------------------------------------------------------------- a killed job resumes from disk

KILLED_CHILD = """
import json, sys, time
from pathlib import Path
import ogaudit.pipeline.run as pipeline
from ogaudit.server.jobs import JobRegistry, submit_audit

def stall(*args, **kwargs):  # the model is trained and cached: hold here until the parent kills us
    print("trained", flush=True)
    time.sleep(600)

pipeline.head_evidence = stall
settings = pipeline.AuditSettings(**json.loads(sys.argv[3]))
submit_audit(JobRegistry(), Path(sys.argv[1]), "digits", settings, cache_dir=sys.argv[2]).wait()
"""


@pytest.mark.slow
def test_sigkilled_audit_job_resumes_by_itself_on_the_next_server_and_reuses_the_trained_model(app_home, tmp_path):
    project, cache = app_home / "killed", tmp_path / "cache"
    project.mkdir()
    settings = json.dumps({**asdict(FAST), "layers": []})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(project), str(cache), settings],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "trained\n"
        assert len(list((cache / "v1" / "model").glob("*/model.pt"))) == 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert read_status(project, "audit").status == "running" and not Project(project).is_finished()

    at = start(project="killed")  # a fresh server: no live job, a status file that still says "running"
    assert not at.exception and "This audit was interrupted" not in texts(at.warning)  # it resumed by itself
    wait_for_job(project)
    at.run()
    assert not at.exception and not at.error
    assert [c.key for c in at.get("plotly_chart")] == ["map-killed-flagged"]
    record = Project(project).read_record()
    assert record["model"]["cached"] is True  # the stage that finished before the kill was not redone
    assert read_status(project, "audit").status == "done"


# ---------------------------------------------------------------- a failed job: its stage, then a retry


def test_failed_audit_shows_its_stage_keeps_the_app_usable_and_can_be_retried(app_home, tmp_path, monkeypatch):
    data = tmp_path / "later.npz"
    data.write_bytes(b"")  # the user's export is still empty
    monkeypatch.setenv("OGAUDIT_DATA_ROOTS", str(tmp_path))
    at = start()
    at.sidebar.radio(key="setup-source").set_value("Path").run()
    at.sidebar.text_input(key="setup-path").input(str(data))
    at.sidebar.selectbox(key="setup-map").set_value("pca")
    at.sidebar.number_input(key="setup-epochs").set_value(1)
    at.sidebar.text_input(key="setup-name").input("flaky")
    next(b for b in at.sidebar.button if b.label == "Start audit").click().run()
    wait_for_job(app_home / "flaky")
    at.run()
    assert not at.exception
    assert "failed during the **load** stage" in texts(at.error) and "Cannot read" in texts(at.error)
    assert at.sidebar.selectbox(key="project-picker")  # the rest of the app still works

    digits = load_dataset("digits", limit=200)
    np.savez(data, x=digits.x, y=digits.y, ids=digits.sample_ids)  # the user fixes the cause
    at.button(key="retry-flaky").click().run()
    wait_for_job(app_home / "flaky")
    at.run()
    assert not at.exception and not at.error
    assert read_status(app_home / "flaky", "audit").status == "done" and Project(app_home / "flaky").is_finished()


# ---------------------------------------------------------------- full disk, read-only folder


@pytest.fixture
def small_fs(tmp_path):
    """``mount(size_kb, kind)``: a real, small file system (``tmpfs``, or ``ext4`` on a loop device) mounted under
    ``tmp_path``, so that a full disk is the kernel's ENOSPC, not a mock. Skips where mounting is not allowed
    (it needs root or CAP_SYS_ADMIN); unmounted after the test."""
    mounted: list[Path] = []

    def mount(size_kb: int, kind: str = "tmpfs") -> Path:
        where = tmp_path / f"{kind}-{len(mounted)}"
        where.mkdir()
        if kind == "tmpfs":
            command = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0777", "tmpfs", str(where)]
        else:
            image = where.with_suffix(".img")
            with open(image, "wb") as handle:
                handle.truncate(size_kb * 1024)
            made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True)
            if made.returncode != 0:
                pytest.skip(f"cannot make an ext4 image here: {made.stderr.strip()}")
            command = ["mount", "-o", "loop", str(image), str(where)]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no `mount` command: a real small file system cannot be made here")
        if done.returncode != 0:
            pytest.skip(f"mounting a small {kind} is not allowed here ({done.stderr.strip()}); needs root")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Write a ballast file so that only about ``leave`` bytes stay free on ``folder``'s file system."""
    ballast = folder / "ballast"
    stats = os.statvfs(folder)
    size = max(0, stats.f_bavail * stats.f_frsize - leave)
    with open(ballast, "wb") as handle:
        for _ in range(size // 65536):
            handle.write(bytes(65536))
        handle.write(bytes(size % 65536))
    return ballast


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_a_real_full_disk_keeps_the_old_file_and_leaves_no_temporary_file(small_fs, kind):
    disk = small_fs(2048, kind)
    target = disk / "run.json"
    storage.write_json(target, {"old": True})
    ballast = fill(disk, 64 * 1024)
    with pytest.raises(StorageError, match=r"No space left on device.*free disk space"):
        storage.write_json(target, {"new": "x" * 400_000})
    assert storage.read_json(target) == {"old": True}
    assert sorted(p.name for p in disk.iterdir() if p.name != "lost+found") == ["ballast", "run.json"]
    ballast.unlink()
    storage.write_json(target, {"new": "x" * 400_000})  # space freed: the same write succeeds
    assert len(storage.read_json(target)["new"]) == 400_000


def test_a_real_full_disk_fails_the_audit_leaves_no_complete_looking_run_and_a_retry_finishes(small_fs, cache_dir):
    """The audit's project on a 1 MB file system with ~40 kB free: it fails while writing its results,
    leaves no finished-looking run and no temporary file, and runs to the end once space is freed. (A
    re-scan into a finished project is the project-core issue: the new run must replace the old one whole.)"""
    disk = small_fs(1024)
    project = disk / "proj"
    ballast = fill(disk, 40 * 1024)
    snap = submit_audit(JobRegistry(), project, "digits", FAST, cache_dir=cache_dir).wait(180)
    assert snap.status == "failed" and snap.error_type == "StorageError", (snap.status, snap.error)
    assert "No space left on device" in snap.error and "free disk space" in snap.error
    assert not Project(project).is_finished() and not (project / "run.json").exists()
    assert not [p.name for p in project.rglob("*") if p.name.endswith(".part")]
    ballast.unlink()
    snap = submit_audit(JobRegistry(), project, "digits", FAST, cache_dir=cache_dir).wait(180)
    assert snap.status == "done" and Project(project).is_finished()


LEDGER_FILLER = """
import json, sys
from ogaudit.errors import LedgerError
from ogaudit.review.ledger import Ledger
ids = [f"s{i}" for i in range(100000)]
ledger = Ledger.open(sys.argv[1], dataset_fingerprint="fp", sample_ids=ids, given_labels=["a", "b"] * 50000,
                     class_names=["a", "b"])
for sample_id in ids:
    try:
        ledger.decide(sample_id, "relabel", label="a", note="x" * 2000, annotator="ann")
    except LedgerError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        break
    print(sample_id, flush=True)
"""


def test_a_real_full_disk_in_the_ledger_is_a_ledger_error_and_keeps_every_returned_decision(small_fs, tmp_path):
    disk = small_fs(512)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", LEDGER_FILLER, str(disk / "ledger.sqlite")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # a clean error, not a crash (SIGBUS on the -shm map)
    *returned, last = done.stdout.splitlines()
    assert "full" in json.loads(last)["error"] and len(returned) > 20
    ledger = Ledger.open(
        disk / "ledger.sqlite",
        dataset_fingerprint="fp",
        sample_ids=[f"s{i}" for i in range(100000)],
        given_labels=["a", "b"] * 50000,
        class_names=["a", "b"],
    )
    assert ledger.state()["sample_id"].tolist() == returned  # every returned one, and not the failed one


def test_a_full_disk_under_the_layer_gradient_store_is_an_error_and_its_done_chunks_stay(small_fs):
    """The store writes plain files (no memory map, whose first write past the free space would be a SIGBUS): a
    full disk is a StorageError at the chunk that does not fit, the chunks before it stay done, nothing half-made
    is left, and once space is freed the next run writes only the rest."""
    from ogaudit.cache.store import SampleStore

    disk = small_fs(6144)
    fields = {"gradients": ((512,), "float32")}  # 100 kB a chunk of 50 rows, 4 MB in all
    computed = []

    def rows(start: int, stop: int) -> dict:
        computed.append(start)
        return {"gradients": np.full((stop - start, 512), start, dtype=np.float32)}

    ballast = fill(disk, 2048 * 1024)
    with pytest.raises(StorageError, match=r"Cannot write .*gradients-.*free disk space"):
        SampleStore(disk / "grads", 2000, fields, chunk_rows=50).fill(rows)
    store = SampleStore(disk / "grads", 2000, fields, chunk_rows=50)
    done = store.missing()[0]
    assert 0 < done < store.n_chunks and store.missing() == list(range(done, store.n_chunks))
    assert not [p.name for p in (disk / "grads").iterdir() if p.name.endswith(".part")]
    ballast.unlink()
    computed.clear()
    store.fill(rows)
    assert computed == [store.bounds(chunk)[0] for chunk in range(done, store.n_chunks)]
    np.testing.assert_array_equal(store.read("gradients")[:, 0], np.repeat(np.arange(0, 2000, 50), 50))


def test_disk_full_simulated_at_map_csv_fails_the_job_leaves_no_complete_looking_run_and_retries(
    tmp_path, cache_dir, monkeypatch
):
    """The same as the real full disk above, at one exact point (the rename of map.csv), on any machine."""
    project = tmp_path / "proj"
    real_replace = os.replace

    def full_at_map_csv(src, dst):
        if Path(dst).name == "map.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_at_map_csv)
    snap = submit_audit(JobRegistry(), project, "digits", FAST, cache_dir=cache_dir).wait(180)
    assert snap.status == "failed" and snap.error_type == "StorageError" and snap.error_stage == "map"
    assert "No space left on device" in snap.error and "free disk space" in snap.error
    assert not Project(project).is_finished() and not (project / "run.json").exists()  # scores.csv alone is not a run
    assert not [p.name for p in project.iterdir() if p.name.endswith(".part")]

    monkeypatch.setattr(os, "replace", real_replace)  # space freed: the same request runs again
    snap = submit_audit(JobRegistry(), project, "digits", FAST, cache_dir=cache_dir).wait(180)
    assert snap.status == "done" and Project(project).is_finished()


def test_read_only_output_folder_fails_before_any_work(tmp_path, cache_dir, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own parameter name
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(storage.tempfile, "mkstemp", read_only)
    with pytest.raises(StorageError, match=r"Cannot write .*readonly.*Read-only file system.*writable folder"):
        audit("digits", FAST, out_dir=out, cache_dir=cache_dir)
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_folder_by_permissions(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="Cannot write"):
            storage.write_json(folder / "run.json", {"a": 1})
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_disk_full_in_the_ledger_is_a_ledger_error_and_keeps_every_earlier_decision(tmp_path, monkeypatch):
    ids = [f"s{i}" for i in range(3000)]

    def open_ledger():
        return Ledger.open(
            tmp_path / "ledger.sqlite",
            dataset_fingerprint="fp",
            sample_ids=ids,
            given_labels=["a", "b"] * 1500,
            class_names=["a", "b"],
        )

    ledger = open_ledger()
    ledger.decide(ids[:10], "remove", annotator="ann")
    real_connect = sqlite3.connect

    def nearly_full(*args, **kwargs):  # the file may not grow by more than a couple of pages
        conn = real_connect(*args, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", nearly_full)
    with pytest.raises(LedgerError, match="full"):
        ledger.decide(ids[10:], "relabel", label="a", note="x" * 200, annotator="ann")
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    state = open_ledger().state()
    assert state["sample_id"].tolist() == ids[:10] and set(state["action"]) == {"remove"}  # nothing half-written


# ---------------------------------------------------------------- damaged arrays, images and archives


def _bare_npy(path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_bytes(b""), "Cannot read .* as .npz"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "Cannot read .* as .npz"),
        (_bare_npy, "single array, not an .npz"),
        (lambda p: np.savez(p, x=np.array([[1, 2], [3, 4]], dtype=object), y=np.array([0, 1])), "not Python objects"),
        (lambda p: np.savez(p, x=np.array([[np.inf, 1.0], [0.0, 1.0]]), y=np.array([0, 1])), "NaN or infinite"),
        (lambda p: np.savez(p, x=np.zeros((3, 2)), y=np.array([0, 1])), "3 samples but y"),
    ],
)
def test_damaged_or_hostile_npz_is_a_data_error(tmp_path, write, match):
    path = tmp_path / "arrays.npz"
    write(path)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_truncated_image_and_a_decompression_bomb_header_are_skipped_by_name(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("L", (16, 16), 40 * i).save(tmp_path / cls / f"{i}.png")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "a" / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10 gigapixels claimed, 60 bytes on disk
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 10))
    (tmp_path / "b" / "bomb.png").write_bytes(bomb + _png_chunk(b"IEND", b""))
    dataset = load_dataset(tmp_path)
    reasons = {s.path: s.reason for s in dataset.skipped}
    assert len(dataset) == 4
    assert reasons["a/cut.png"].startswith("corrupt or truncated image")
    assert reasons["b/bomb.png"].startswith("image too large")


def test_zip_bomb_and_damaged_zip_uploads_are_refused_and_leave_nothing(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("c/zeros.png", b"\0" * (16 * 1024**2))  # 16 MB of zeros in ~16 kB
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(DataError, match="unpacks to"):
        unpack_zip(bomb, tmp_path / "a", max_unpacked_bytes=1024**2)
    lying = bytearray(bomb)
    central = lying.rindex(b"PK\x01\x02")
    lying[central + 24 : central + 28] = (100).to_bytes(4, "little")  # the header claims 100 bytes
    with pytest.raises(DataError, match="damaged"):
        unpack_zip(bytes(lying), tmp_path / "b", max_unpacked_bytes=1024**2)
    corrupt = bytearray(bomb)
    corrupt[60:90] = b"\xff" * 30  # the deflate stream itself
    with pytest.raises(DataError, match="damaged"):
        unpack_zip(bytes(corrupt), tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
