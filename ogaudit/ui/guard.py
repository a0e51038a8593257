"""What Streamlit's server does for any client, narrowed to what ogaudit allows: installed once per process.

Streamlit answers three things for every websocket or HTTP client, signed in or not; :func:`install` (called by
``ogaudit.ui.main.main`` on every run, effective once) wraps each, and ``docs/SECURITY.md`` lists the tests:

* the ``clear_cache`` message (the developer menu's *Clear cache*): refused for everyone and logged. ogaudit's
  caches hold only what can be read again from disk, and its security and job state is not in them
  (:mod:`ogaudit.server.state`), but one visitor must not be able to make every other visitor's next click slow.
* the ``load_git_info`` message: ignored (it would send the app folder's git remote and branch to any visitor).
* the upload endpoint ``PUT /_stcore/upload_file/<session id>/<file id>``: refused with 403 before the body is read
  unless the session is granted by :class:`~ogaudit.server.state.UploadGate` (a signed-in admin, or the person on a
  local-only server), and with 413 once the session holds
  :data:`~ogaudit.server.state.UPLOAD_FILES_PER_SESSION` files or
  :data:`~ogaudit.server.state.UPLOAD_BYTES_PER_SESSION` bytes. Streamlit's ``server.maxUploadSize`` caps each file.
  Streamlit's only other use of :meth:`Runtime.is_active_session` is none (1.67), which is why the check sits there.
* ``/media/<file id>`` (thumbnails, downloads): served only while a granted session shows the file, and (unless
  the server is local-only) only to the browser that session's socket came from (the token of Streamlit's XSRF
  cookie, which the browser sends with every image request); otherwise 404, as for a file that does not exist.
  Whoever copies the URL to another browser, or reads it from a log, gets 404.
* downloads made on click (``st.download_button(data=callable)``): the ids of the previous runs' buttons, and the
  files made, are kept for :data:`DOWNLOAD_GRACE_S`, so a click that crossed a live rerun still downloads
  (Streamlit forgets the ids at the end of every run, and deletes an unmapped made file at the second sweep after
  it, a polling fragment's run included); a button drawn disabled is revoked at once, as Streamlit does.

It also adds one endpoint of its own, ``POST /_ogaudit/session`` (and ``/_ogaudit/sign-out``): the page that has just
signed in sends a one-use code (:class:`~ogaudit.server.tokens.Handoffs`) and gets back the session token as an
``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over HTTPS), which a page script cannot read and which brings the
sign-in back after a refresh (:mod:`ogaudit.server.tokens`). The routes are added when Streamlit builds its app, so
only a server started through :mod:`ogaudit.ui.serve` (``scripts/app.sh``) has them; under a plain ``streamlit run``
a refresh signs out, as before.

When a socket closes, the session's uploaded files are dropped at once (Streamlit would keep them until the session
expires) and its grant is revoked; a reconnecting tab is granted again by its next run, and uploads again.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time

from ogaudit.server.state import UPLOAD_BYTES_PER_SESSION, UPLOAD_FILES_PER_SESSION, server_state

_LOG = logging.getLogger("ogaudit.guard")
_INSTALLED = False
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Wrap Streamlit's handlers (once per process; later calls do nothing)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        _refuse_clear_cache()
        _gate_uploads()
        _gate_media()
        _add_session_routes()
        _INSTALLED = True


def _refuse_clear_cache() -> None:
    from streamlit.runtime.app_session import AppSession

    def refused(self) -> None:
        _LOG.warning("refused a clear_cache message from session %s: ogaudit's caches are not clearable", self.id)

    def no_git_info(self) -> None:  # the app folder's git remote and branch are nobody's business
        _LOG.info("ignored a load_git_info message from session %s", self.id)

    refused.ogaudit_guard = no_git_info.ogaudit_guard = True
    AppSession._handle_clear_cache_request = refused
    AppSession._handle_git_information_request = no_git_info


_request_xsrf_cookie: contextvars.ContextVar[str | None] = contextvars.ContextVar("ogaudit_xsrf", default=None)
"""The XSRF cookie of the upload request being handled: Streamlit checks it (``validate_xsrf_token``) just before
it asks whether the session is active, in the same task, so the gate can tell which browser sent the upload."""


def _gate_uploads() -> None:
    from starlette.exceptions import HTTPException
    from streamlit.runtime.runtime import Runtime
    from streamlit.web.server.starlette import starlette_routes

    original_validate = starlette_routes.validate_xsrf_token

    def validate_xsrf_token(header, cookie):
        _request_xsrf_cookie.set(cookie)
        return original_validate(header, cookie)

    validate_xsrf_token.ogaudit_guard = True
    starlette_routes.validate_xsrf_token = validate_xsrf_token

    original_active = Runtime.is_active_session
    original_disconnect = Runtime.disconnect_session

    def is_active_session(self, session_id: str) -> bool:
        if not original_active(self, session_id):
            return False
        if not server_state().uploads.allows(session_id, browser_key(_request_xsrf_cookie.get())):
            raise HTTPException(status_code=403, detail="Sign in to upload files, from the browser you signed in with.")
        held = list(getattr(self.uploaded_file_mgr, "file_storage", {}).get(session_id, {}).values())
        if len(held) >= UPLOAD_FILES_PER_SESSION or sum(len(f.data) for f in held) >= UPLOAD_BYTES_PER_SESSION:
            raise HTTPException(
                status_code=413,
                detail=f"At most {UPLOAD_FILES_PER_SESSION} files or {UPLOAD_BYTES_PER_SESSION >> 20} MB per session: "
                "remove one first.",
            )
        return True

    def disconnect_session(self, session_id: str, *args, **kwargs) -> None:
        try:
            original_disconnect(self, session_id, *args, **kwargs)
        finally:
            server_state().uploads.revoke(session_id)
            self.uploaded_file_mgr.remove_session_files(session_id)

    is_active_session.ogaudit_guard = disconnect_session.ogaudit_guard = True
    Runtime.is_active_session = is_active_session
    Runtime.disconnect_session = disconnect_session


def browser_key(cookie: str | None) -> str | None:
    """A key of the browser that sent Streamlit's XSRF cookie ``cookie``: the token inside it (the cookie's text
    changes with its mask on every response; the token does not), or None without a valid cookie."""
    if not cookie:
        return None
    from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string

    token, _ = decode_xsrf_token_string(cookie)
    return token.hex() if token else None


XSRF_COOKIE = "_streamlit_xsrf"
DOWNLOAD_GRACE_S = 60.0
"""How long a download button of an earlier run still makes its file. Streamlit gives a button made when clicked
(``st.download_button(data=callable)``) a new id on every run and forgets the previous run's id when the run ends;
a browser that clicked just before the rerun's new button reached it (a live rerun after another annotator's
decision) asked for a forgotten id, and its download failed ("Failed to generate file for download"). The callable
reads the ledger when it runs, so the file is as current as from the new button. The file made is kept as long:
Streamlit deleted it at the second sweep after it (the end of any run, a polling fragment's included: within a
second here), and a slow browser's fetch then failed ("canceled")."""
_INTERNAL_READERS = ("read_file", "get_url")
"""Streamlit's own callers of the media storage's ``get_file`` that serve no request (checked by name, so a new
caller is refused until it is looked at: fail closed)."""


def _gate_media() -> None:
    import sys

    from streamlit.runtime import Runtime
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.media_file_storage import MediaFileStorageError
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage, get_extension_for_mimetype

    original_get = MemoryMediaFileStorage.get_file
    original_execute = MediaFileManager.execute_deferred
    original_orphans = MediaFileManager._remove_orphaned_deferred_callables
    original_revoke = MediaFileManager.remove_deferred
    original_inactive = MediaFileManager._get_inactive_file_ids
    original_delete = MediaFileManager._delete_file
    made_at: dict[str, float] = {}  # a file made on click -> when (kept for DOWNLOAD_GRACE_S)
    made_for: dict[str, set[str]] = {}  # a deferred download's file id -> the sessions whose button made it
    dropped: dict[str, tuple[float, dict]] = {}  # a download button's id from an earlier run -> (when, its entry)
    made_lock = threading.Lock()

    def remove_orphaned_deferred_callables(self) -> None:
        """Streamlit's (at the end of a run; its caller holds the manager's lock), keeping the buttons of the
        previous run for a grace period. A button revoked because it is now disabled is not kept."""
        before = dict(self._deferred_callables)
        original_orphans(self)
        now = time.monotonic()
        with made_lock:
            dropped.update({k: (now, entry) for k, entry in before.items() if k not in self._deferred_callables})
            for old in [k for k, (at, _) in dropped.items() if now - at > DOWNLOAD_GRACE_S]:
                del dropped[old]

    def remove_deferred(self, coordinates: str, *, element_id: str = "") -> None:
        """Streamlit's revocation of a button drawn disabled: its earlier runs' ids are not kept either."""
        original_revoke(self, coordinates, element_id=element_id)
        with made_lock:
            for old in [
                k
                for k, (_, entry) in dropped.items()
                if entry["coordinates"] == coordinates or (element_id and entry["element_id"] == element_id)
            ]:
                del dropped[old]

    def execute_deferred(self, file_id: str) -> str:
        """Streamlit's, remembering which session owns the button (it leaves the made file mapped to none) and
        keeping the made file for :data:`DOWNLOAD_GRACE_S` (Streamlit's sweep at the end of any run, a polling
        fragment's included, deleted it after two sweeps, before a slow browser fetched it); a button dropped by a
        rerun in the last :data:`DOWNLOAD_GRACE_S` seconds still makes its file."""
        for attempt in range(2):
            revived = False
            with self._lock:
                entry = self._deferred_callables.get(file_id)
                if entry is None:
                    with made_lock:
                        at, kept = dropped.get(file_id, (0.0, None))
                    if kept is not None and time.monotonic() - at <= DOWNLOAD_GRACE_S:
                        entry = self._deferred_callables[file_id] = kept  # back for this one call
                        revived = True
            if entry is None:
                return original_execute(self, file_id)  # Streamlit's refusal
            try:
                url = original_execute(self, file_id)
                break
            except MediaFileStorageError:
                if attempt or file_id in self._deferred_callables or file_id not in dropped:
                    raise  # the callable itself failed, or the id is gone for good
            finally:
                if revived:
                    with self._lock:
                        self._deferred_callables.pop(file_id, None)
        made = os.path.splitext(url.rsplit("/", 1)[-1])[0]
        with made_lock:
            made_for.setdefault(made, set()).add(entry["session_id"])
            made_at[made] = time.monotonic()
        return url

    def get_inactive_file_ids(self) -> set[str]:
        """Streamlit's (its caller holds the manager's lock), less the files made on click in the grace period."""
        inactive = original_inactive(self)
        now = time.monotonic()
        with made_lock:
            for old in [k for k, at in made_at.items() if now - at > DOWNLOAD_GRACE_S]:
                del made_at[old]
            return inactive - set(made_at)

    def delete_file(self, file_id: str) -> None:
        original_delete(self, file_id)
        with made_lock:
            made_for.pop(file_id, None)

    def get_file(self, filename: str):
        file = original_get(self, filename)
        caller = sys._getframe(1)
        if caller.f_code.co_name in _INTERNAL_READERS:
            return file
        request = caller.f_locals.get("request")  # the /media endpoint's Starlette request
        cookies = getattr(request, "cookies", None) or {}
        if not _served(os.path.splitext(filename)[0], browser_key(cookies.get(XSRF_COOKIE))):
            raise MediaFileStorageError(f"Bad filename '{filename}'. (No media file with id '{filename}')")
        return file

    def get_url(self, file_id: str) -> str:  # Streamlit's own, reading the file before any session shows it
        extension = get_extension_for_mimetype(original_get(self, file_id).mimetype)
        return f"{self._media_endpoint}/{file_id}{extension}"

    def _served(file_id: str, browser: str | None) -> bool:
        if not Runtime.exists():
            return False
        by_session = Runtime.instance().media_file_mgr._files_by_session_and_coord
        gate = server_state().uploads
        for _ in range(3):  # read without Streamlit's lock (its read path does too); a resize mid-copy is retried
            try:
                sessions = [(sid, set(coords.values())) for sid, coords in list(by_session.items())]
                break
            except RuntimeError:
                continue
        else:
            return False
        with made_lock:
            sessions += [(sid, {file_id}) for sid in made_for.get(file_id, ())]
        return any(file_id in ids and gate.serves(sid, browser) for sid, ids in sessions)

    get_file.ogaudit_guard = get_url.ogaudit_guard = execute_deferred.ogaudit_guard = True
    remove_orphaned_deferred_callables.ogaudit_guard = remove_deferred.ogaudit_guard = True
    get_inactive_file_ids.ogaudit_guard = delete_file.ogaudit_guard = True
    MemoryMediaFileStorage.get_file = get_file
    MemoryMediaFileStorage.get_url = get_url
    MediaFileManager.execute_deferred = execute_deferred
    MediaFileManager._remove_orphaned_deferred_callables = remove_orphaned_deferred_callables
    MediaFileManager.remove_deferred = remove_deferred
    MediaFileManager._get_inactive_file_ids = get_inactive_file_ids
    MediaFileManager._delete_file = delete_file


SESSION_PATH = "_ogaudit/session"
SIGN_OUT_PATH = "_ogaudit/sign-out"
MAX_CODE_BYTES = 256


def endpoint(path: str) -> str:
    """The URL path of one of ogaudit's endpoints under Streamlit's ``server.baseUrlPath``."""
    from streamlit import config

    base = str(config.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(part for part in (base, path) if part)


LOCAL_ONLY_PATHS = ("_stcore/metrics",)
"""Streamlit routes answered only to a client on this machine (404 to any other, signed in or not): the metrics
count sessions and cached and uploaded bytes, which tell a visitor how the server is used."""


def _local_only(route):
    """``route`` unchanged, or, for a path in :data:`LOCAL_ONLY_PATHS`, the same route answering 404 to a client
    that is not on this machine (the address Streamlit's server reports: behind a same-host proxy, the one it
    forwards in ``X-Forwarded-For``; :func:`ogaudit.server.auth.client_key`)."""
    from starlette.responses import Response
    from starlette.routing import Route

    from ogaudit.server.auth import LOOPBACK_CLIENT, client_key

    path = getattr(route, "path", "")
    if not isinstance(route, Route) or not any(path.endswith(local) for local in LOCAL_ONLY_PATHS):
        return route
    inner = route.endpoint

    async def local_only(request):
        host = request.client.host if request.client is not None else None
        if client_key(host) != LOOPBACK_CLIENT:
            return Response(status_code=404)
        return await inner(request)

    return Route(path, local_only, methods=sorted(route.methods or ()), name=route.name)


def _add_session_routes() -> None:
    from starlette.responses import Response
    from starlette.routing import Route
    from streamlit.web.server.starlette import starlette_app

    from ogaudit.project import workspace_root
    from ogaudit.server.tokens import TOKEN_COOKIE, SessionTokens

    async def read_small(request) -> bytes | None:
        if int(request.headers.get("content-length") or 0) > MAX_CODE_BYTES:
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_CODE_BYTES:
                return None
        return body

    async def session(request) -> Response:
        """Trade a one-use code for the session cookie."""
        body = await read_small(request)
        if body is None:
            return Response(status_code=413)
        taken = server_state().handoffs.take(
            body.decode("ascii", "replace"), browser_key(request.cookies.get(XSRF_COOKIE))
        )
        if taken is None:
            return Response(status_code=403)
        token, expires_at = taken
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            max_age=max(int(expires_at - time.time()), 0),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def sign_out(request) -> Response:
        """Forget the session cookie in this browser, and sign its token out on the server."""
        token = request.cookies.get(TOKEN_COOKIE)
        if token:
            try:
                SessionTokens(workspace_root()).revoke(token)
            except Exception:  # noqa: BLE001 - the cookie goes anyway
                _LOG.exception("could not record a sign-out")
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    original = starlette_app.create_streamlit_routes

    def create_streamlit_routes(runtime):
        ours = [
            Route(endpoint(SESSION_PATH), session, methods=["POST"]),
            Route(endpoint(SIGN_OUT_PATH), sign_out, methods=["POST"]),
        ]
        return [*ours, *[_local_only(route) for route in original(runtime)]]

    create_streamlit_routes.ogaudit_guard = True
    starlette_app.create_streamlit_routes = create_streamlit_routes
