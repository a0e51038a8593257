"""What a signed-out client may change on the server: nothing. Security and job state outside every cache a client
can clear, resumed once per process, one live audit per project folder (a lock the job holds), and a sign-in with
one constant path (parallel attempts, long passwords, unknown vs known names through the app's own path).

The real-server halves (a websocket sending ``clear_cache``, signed-out uploads, ``/media/``) are in
tests/ui/test_server_security.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ogaudit.cli import main
from ogaudit.errors import SettingsError
from ogaudit.pipeline.run import AuditSettings
from ogaudit.project import Project
from ogaudit.server import auth
from ogaudit.server.auth import AuthError, LoginLimiter, Session, User, UserStore, client_key, current_user, sign_in
from ogaudit.server.jobs import FolderLock, Job, JobBusy, JobRegistry, submit_audit
from ogaudit.server.state import server_state
from ogaudit.ui import guard
from ogaudit.ui.main import resume_interrupted

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PASSWORD = "correct horse"
LONG = "x" * 100  # over bcrypt's 72 bytes
FAST = AuditSettings(epochs=1, map_method="pca", noise_rate=0.1, limit=300)


@pytest.fixture
def store(tmp_path):
    store = UserStore.in_home(tmp_path)
    store.add("root", PASSWORD, "admin")
    return store


# ---------------------------------------------------------------- sign-in: one path, reserved attempts


def test_parallel_sign_ins_are_checked_one_at_a_time_against_the_limit(store, monkeypatch):
    """20 wrong attempts sent at once: exactly 5 reach bcrypt (the limit), 15 are refused before it."""
    limiter = LoginLimiter(max_failures=5, window_s=600)
    checked = []
    verify = UserStore.verify

    def counted(self, name, password):
        checked.append(name)
        return verify(self, name, password)

    monkeypatch.setattr(UserStore, "verify", counted)
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        start.wait()
        try:
            sign_in(store, limiter, "root", f"guess-{i}", client="10.0.0.9")
        except AuthError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(checked) == 5
    assert sum(o == "Wrong user name or password." for o in outcomes) == 5
    assert sum(o.startswith("Too many failed sign-ins") for o in outcomes) == 15
    with pytest.raises(AuthError, match="Too many"):  # the right password too, until the window passes
        sign_in(store, limiter, "root", PASSWORD, client="10.0.0.8")


def test_a_success_keeps_the_clients_other_failures(store):
    """Signing in to one's own account does not wipe the client's failed guesses at other names."""
    store.add("ann", PASSWORD, "annotator")
    limiter = LoginLimiter(max_failures=3, window_s=600)
    for name in ("ann", "root"):
        with pytest.raises(AuthError, match="Wrong"):
            sign_in(store, limiter, name, "guess", client="c")
    sign_in(store, limiter, "ann", PASSWORD, client="c")
    with pytest.raises(AuthError, match="Wrong"):
        sign_in(store, limiter, "root", "guess", client="c")
    with pytest.raises(AuthError, match="Too many"):  # 3 failures from client c, the success in between uncounted
        sign_in(store, limiter, "root", PASSWORD, client="c")


@pytest.mark.parametrize("name", ["root", "nobody", "../../etc", 12])
def test_a_password_over_72_bytes_is_a_counted_failure_for_any_name(store, name):
    limiter = LoginLimiter(max_failures=2, window_s=600)
    for _ in range(2):
        with pytest.raises(AuthError, match=r"^Wrong user name or password\.$"):
            sign_in(store, limiter, name, LONG, client="c")
    with pytest.raises(AuthError, match="Too many"):
        sign_in(store, limiter, name, LONG, client="c")
    assert store.verify("root", PASSWORD + "\x00") is None and store.verify("root", None) is None


def test_a_damaged_hash_is_a_failure_not_a_stack_trace(store):
    text = store.path.read_text().replace("$2b$12$", "$2b$xx$")
    store.path.write_text(text)
    with pytest.raises(AuthError, match="Wrong user name or password"):
        sign_in(store, LoginLimiter(), "root", PASSWORD)


def test_users_add_refuses_a_password_over_72_bytes_without_a_traceback(tmp_path, monkeypatch, capsys):
    with pytest.raises(SettingsError, match="at most 72 bytes"):
        UserStore.in_home(tmp_path).add("ann", LONG, "admin")
    with pytest.raises(SettingsError, match="at most 72 bytes"):
        UserStore.in_home(tmp_path).add("ann", "é" * 37, "admin")  # 37 characters, 74 bytes
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(LONG + "\n"))
    assert main(["users", "add", "ann", "--role", "admin", "--password-stdin", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "at most 72 bytes" in err and "Traceback" not in err
    assert not UserStore.in_home(tmp_path).list()


def test_unknown_names_cost_one_bcrypt_check_like_known_ones(store, monkeypatch):
    import bcrypt

    calls = []
    check = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append("check") or check(*a))
    monkeypatch.setattr(bcrypt, "hashpw", lambda *a: calls.append("hash") or pytest.fail("hashed at sign-in"))
    for name, password in [("root", "guess"), ("nobody", "guess"), ("root", LONG), ("nobody", LONG)]:
        calls.clear()
        assert store.verify(name, password) is None
        assert calls == ["check"]


def test_the_client_key_takes_the_servers_view_and_never_skips_loopback():
    assert client_key(None) == client_key("127.0.0.1") == client_key("::1") == "loopback"
    assert client_key("203.0.113.7") == "203.0.113.7"


def test_a_session_used_from_another_client_is_signed_out(store):
    session = Session(User("root", "admin"), time.time() + 60, "203.0.113.7")
    assert current_user(store, session, "203.0.113.7").name == "root"
    assert current_user(store, session, "198.51.100.1") is None


@pytest.fixture
def team(tmp_path, monkeypatch, store, cache_dir):
    monkeypatch.setenv("OGAUDIT_HOME", str(store.path.parent))
    monkeypatch.setenv("OGAUDIT_CACHE", str(cache_dir))
    monkeypatch.setattr("ogaudit.ui.auth.listen_address", lambda: "0.0.0.0")
    st.cache_resource.clear()
    return store.path.parent


def _timed_sign_in(name: str) -> float:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.text_input(key="sign-in-name").input(name)
    at.text_input(key="sign-in-password").input("not the password")
    button = next(b for b in at.button if b.label == "Sign in")
    start = time.perf_counter()
    button.click().run()
    elapsed = time.perf_counter() - start
    assert at.error[0].value == "Wrong user name or password."
    return elapsed


def test_unknown_and_known_names_take_the_same_time_through_the_app(team):
    """The sign-in form's own path (AppTest: form, limiter, store, bcrypt): the fastest of five tries of each within
    0.3 s, where the old path took ~0.7 s longer for an unknown name on every try (a dummy hash built per attempt).
    The bound is half the old gap, not a tight one. The fastest try, not the median: load on a shared machine only
    ever adds time, so the minimum is the path's own cost (medians of identical paths were seen 0.13 s apart at
    load 22, and 0.34 s apart at load 12)."""
    server_state().limiter.max_failures = 100
    _timed_sign_in("root")  # warm-up: imports, first page
    known, unknown = [], []
    for i in range(5):
        known.append(_timed_sign_in("root"))
        unknown.append(_timed_sign_in(f"nobody{i}"))
    gap = abs(min(unknown) - min(known))
    assert gap < 0.3, (known, unknown)
    assert min(known + unknown) > 0.1  # both paths really ran bcrypt at cost 12


# ---------------------------------------------------------------- state that no client can reset


def test_clearing_every_cache_keeps_the_limiter_the_jobs_and_the_resume(tmp_path):
    """What Streamlit's clear_cache did (st.cache_resource.clear) no longer reaches ogaudit's state."""
    state = server_state()
    for _ in range(5):
        state.limiter.failed("user:root")
    release = threading.Event()
    job = state.jobs.submit(Job("p/audit", "audit", lambda progress, cancel: release.wait(30)))
    calls = []
    state.resume_once(tmp_path, lambda root, jobs: calls.append(root) or ["p"])
    st.cache_resource.clear()
    st.cache_data.clear()
    assert server_state() is state
    assert state.limiter.wait_s("user:root") > 0
    assert state.jobs.get("p/audit") is job and not job.snapshot().finished
    assert state.resume_once(tmp_path, lambda root, jobs: calls.append(root) or ["again"]) == ["p"]
    assert len(calls) == 1
    release.set()
    job.wait(10)


def test_the_clear_cache_message_is_refused(caplog):
    """The handler of the clear_cache message, once the guard is installed, clears nothing."""
    from streamlit.runtime.app_session import AppSession

    guard.install()
    built = []

    @st.cache_resource
    def cached() -> object:
        built.append(1)
        return object()

    first = cached()

    class Session:
        id = "visitor"
        _session_state = {"kept": True}

    with caplog.at_level("WARNING", logger="ogaudit.guard"):
        AppSession._handle_clear_cache_request(Session())
    assert cached() is first and built == [1] and Session._session_state == {"kept": True}
    assert "refused a clear_cache message" in caplog.text


def _blocking_audit(monkeypatch) -> threading.Event:
    release = threading.Event()
    monkeypatch.setattr("ogaudit.pipeline.run.audit", lambda *a, **k: release.wait(30))
    return release


def test_one_live_audit_per_project_folder_whoever_asks(tmp_path, monkeypatch):
    release = _blocking_audit(monkeypatch)
    folder = tmp_path / "p"
    first = submit_audit(JobRegistry(), folder, "digits", FAST, preview=False)
    request = (folder / "request.json").read_bytes() if (folder / "request.json").exists() else None
    same = JobRegistry()
    with pytest.raises(JobBusy, match="already running"):  # a registry that forgot it (the old cleared cache)
        submit_audit(same, folder, "iris", FAST, preview=False)
    if request is not None:
        assert (folder / "request.json").read_bytes() == request  # the running audit's request is untouched
    code = (  # another process (a second server on this workspace) while this one runs: refused by the same lock
        "from ogaudit.server.jobs import FolderLock, JobBusy\n"
        f"try:\n    FolderLock({str(folder)!r}, 'audit').acquire()\nexcept JobBusy:\n    print('busy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "busy", out.stderr
    release.set()
    first.wait(10)
    assert first.snapshot().status == "done"
    again = submit_audit(same, folder, "digits", FAST, preview=False)  # the lock went with the job
    again.wait(10)
    assert again.snapshot().status == "done"


def test_a_dead_process_leaves_no_lock(tmp_path):
    code = f"from ogaudit.server.jobs import FolderLock\nFolderLock({str(tmp_path)!r}, 'audit').acquire()\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    FolderLock(tmp_path, "audit").acquire().release()


def test_an_interrupted_audit_is_resumed_once_per_process(tmp_path, monkeypatch):
    release = _blocking_audit(monkeypatch)
    folder = tmp_path / "p"
    project = Project(folder)
    project.write_request("digits", FAST)
    (folder / "job-audit.json").write_text('{"job_id": "p/audit", "kind": "audit", "status": "running"}')
    state = server_state()
    assert state.resume_once(tmp_path, resume_interrupted) == ["p"]
    st.cache_resource.clear()  # what a client's clear_cache did
    assert state.resume_once(tmp_path, resume_interrupted) == ["p"]  # the answer kept, nothing submitted again
    assert resume_interrupted(tmp_path, JobRegistry()) == []  # even a fresh registry: the folder lock is held
    release.set()
    state.jobs.get("p/audit").wait(10)


def test_auth_keeps_no_per_call_dummy_hash():
    assert not hasattr(UserStore(Path("x")), "_dummy")
    assert auth._DUMMY_HASH.startswith(b"$2b$12$")  # the same cost as every stored hash


def test_the_upload_gate_refuses_signed_out_sessions_and_caps_what_a_session_holds(monkeypatch):
    """The check behind Streamlit's upload endpoint, in-process (the real endpoint: tests/ui/test_server_security.py):
    403 for a session without a grant, 413 at the file or byte cap, yes otherwise."""
    from types import SimpleNamespace

    from starlette.exceptions import HTTPException
    from streamlit.runtime.runtime import Runtime

    guard.install()
    monkeypatch.setattr(guard, "UPLOAD_BYTES_PER_SESSION", 10)
    held: dict[str, dict] = {}
    runtime = SimpleNamespace(
        _session_mgr=SimpleNamespace(is_active_session=lambda sid: sid != "gone"),
        uploaded_file_mgr=SimpleNamespace(file_storage=held),
    )
    assert Runtime.is_active_session(runtime, "gone") is False  # Streamlit's own answer first
    with pytest.raises(HTTPException) as refused:
        Runtime.is_active_session(runtime, "visitor")
    assert refused.value.status_code == 403
    server_state().uploads.grant("admin", time.time() + 60, upload=True, local=True)
    server_state().uploads.grant("annotator", time.time() + 60, upload=False, local=True)
    assert Runtime.is_active_session(runtime, "admin") is True
    with pytest.raises(HTTPException):
        Runtime.is_active_session(runtime, "annotator")  # signed in, but a role that may not upload
    held["admin"] = {"a": SimpleNamespace(data=b"x" * 10)}
    with pytest.raises(HTTPException) as full:
        Runtime.is_active_session(runtime, "admin")
    assert full.value.status_code == 413
    server_state().uploads.grant("expired", time.time() - 1, upload=True, local=True)
    with pytest.raises(HTTPException):
        Runtime.is_active_session(runtime, "expired")


def test_an_upload_goes_only_to_the_browser_that_signed_in(monkeypatch):
    """An attack run: the admin's upload URL (session id and file id, e.g. from a proxy log), sent with another
    browser's XSRF cookie, replaced the file the admin had just uploaded. The upload now has to come from the
    browser the session signed in from (the token in Streamlit's XSRF cookie, checked just before)."""
    from types import SimpleNamespace

    from starlette.exceptions import HTTPException
    from streamlit.runtime.runtime import Runtime
    from streamlit.web.server.starlette import starlette_app_utils, starlette_routes

    guard.install()
    runtime = SimpleNamespace(
        _session_mgr=SimpleNamespace(is_active_session=lambda sid: True),
        uploaded_file_mgr=SimpleNamespace(file_storage={}),
    )
    admins, strangers = (starlette_app_utils.generate_xsrf_token_string() for _ in range(2))
    server_state().uploads.grant("signed-in", time.time() + 60, upload=True, browser=guard.browser_key(admins))

    def upload_from(cookie: str) -> bool:  # what Streamlit's upload handler does: the XSRF check, then this
        starlette_routes.validate_xsrf_token(cookie, cookie)
        return Runtime.is_active_session(runtime, "signed-in")

    assert upload_from(starlette_app_utils.generate_xsrf_token_string(bytes.fromhex(guard.browser_key(admins)))) is True
    with pytest.raises(HTTPException) as refused:
        upload_from(strangers)
    assert refused.value.status_code == 403


def test_a_download_clicked_just_before_a_rerun_still_makes_its_file(monkeypatch):
    """The cause of downloads lost to live reruns: Streamlit gives a download button made on click a new id on
    every run and forgets the previous run's id when the run ends, so a click that left the browser before the
    rerun's new button arrived asked for a forgotten id. The guard keeps those ids for a grace period; a button
    revoked because it is drawn disabled is not kept."""
    from streamlit.runtime import media_file_manager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.media_file_storage import MediaFileStorageError
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    guard.install()
    monkeypatch.setattr(media_file_manager, "_get_session_id", lambda: "tab")
    manager = MediaFileManager(MemoryMediaFileStorage("/media"))
    made = []

    def run(data: bytes) -> str:
        """One full script run of a page with one download button (Streamlit's calls, in its order)."""
        manager.clear_session_refs()
        file_id = manager.add_deferred(lambda: made.append(data) or data, "text/csv", "1.2", element_id="dl")
        manager.remove_orphaned_files()
        return file_id

    old = run(b"a,b\n")
    new = run(b"a,b\n1,2\n")  # another annotator decided: the live rerun
    assert old != new and old not in manager._deferred_callables  # Streamlit forgot the clicked id
    assert manager.execute_deferred(old).startswith("/media/") and made == [b"a,b\n"]
    url = manager.execute_deferred(new)
    assert made[-1] == b"a,b\n1,2\n"
    file_id = url.rsplit("/", 1)[-1].split(".")[0]
    run(b"a,b\n1,2\n")
    run(b"a,b\n1,2\n")  # two sweeps: Streamlit deleted the unmapped file here, before a slow browser fetched it
    assert manager.read_file(file_id).content == b"a,b\n1,2\n"
    monkeypatch.setattr(guard, "DOWNLOAD_GRACE_S", 0.0)
    with pytest.raises(MediaFileStorageError):
        manager.execute_deferred(old)  # past the grace period
    run(b"c\n")
    run(b"c\n")
    assert manager.read_file(file_id) is None  # the made file too
    monkeypatch.setattr(guard, "DOWNLOAD_GRACE_S", 60.0)
    run(b"c\n")
    manager.remove_deferred("1.2", element_id="dl")  # the button is now drawn disabled
    with pytest.raises(MediaFileStorageError):
        manager.execute_deferred(new)
