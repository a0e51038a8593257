"""A real ``streamlit run app.py`` on loopback, attacked by a signed-out client over its websocket and HTTP: the
``clear_cache`` message changes nothing (the sign-in limit holds), uploads are refused before the body is read,
a closed socket leaves no upload in memory, and ``/media/`` files go only to the signed-in browser.

All traffic goes to 127.0.0.1 and is bounded (a few messages, 14 uploads of 1 MB)."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from appserver import NEEDS_CHROMIUM, READY, start_app, stop_app
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from ogaudit.server.auth import UserStore

PASSWORD = "correct horse"
MB = 1024 * 1024


def _server(tmp_path, cache_dir, finished_project, *, team: bool):
    home = tmp_path / "home"
    shutil.copytree(finished_project[0], home / "digits")
    env = {**os.environ, "OGAUDIT_HOME": str(home), "OGAUDIT_CACHE": str(cache_dir)}
    if team:
        store = UserStore.in_home(home)
        store.add("root", PASSWORD, "admin")
        env["OGAUDIT_AUTH"] = "on"
    log = tmp_path / "streamlit.log"
    process, url = start_app(env, log)
    return process, url, home, log


@pytest.fixture
def team_server(tmp_path, cache_dir, finished_project):
    process, url, home, log = _server(tmp_path, cache_dir, finished_project, team=True)
    yield url, home, log, process
    stop_app(process)


@pytest.fixture
def loopback_server(tmp_path, cache_dir, finished_project):
    process, url, home, log = _server(tmp_path, cache_dir, finished_project, team=False)
    yield url, home, log, process
    stop_app(process)


class Client:
    """A signed-out client without a browser: Streamlit's websocket and its XSRF cookie from /_stcore/health."""

    def __init__(self, url: str):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.open(f"{url}/_stcore/health", timeout=10).read()
        self.xsrf = next(c.value for c in self.jar if c.name == "_streamlit_xsrf")

    async def open_session(self, *, first_message: bool = False):
        """A websocket and its session id, once the page's first run has finished (or, with ``first_message``, as
        soon as the server names the session: while the run is still importing the app)."""
        import websockets

        ws = await websockets.connect(
            self.url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"], max_size=None
        )
        await self.send(ws, rerun=True)
        session_id = None
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
            if msg.WhichOneof("type") == "new_session":
                session_id = msg.new_session.initialize.session_id
                if first_message:
                    return ws, session_id
            if msg.WhichOneof("type") == "script_finished" and session_id:
                return ws, session_id

    @staticmethod
    async def send(ws, *, rerun: bool = False, clear_cache: bool = False) -> None:
        msg = BackMsg()
        if rerun:
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = ""
        if clear_cache:
            msg.clear_cache = True
        await ws.send(msg.SerializeToString())

    def upload(self, session_id: str, size: int = MB) -> int:
        """PUT one file of ``size`` bytes as the browser's uploader does; the status (a refusal that comes before
        the body is read may cut the send short: its status is still read)."""
        import http.client
        from urllib.parse import urlparse

        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n'
                "Content-Type: application/zip\r\n\r\n"
            ).encode()
            + b"\0" * size
            + f"\r\n--{boundary}--\r\n".encode()
        )
        parsed = urlparse(self.url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Xsrftoken": self.xsrf,
            "Cookie": f"_streamlit_xsrf={self.xsrf}",
        }
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request("PUT", f"/_stcore/upload_file/{session_id}/{uuid.uuid4()}", body, headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def held_upload_bytes(self) -> int:
        """Bytes Streamlit's upload manager holds, from /_stcore/metrics."""
        text = self.opener.open(f"{self.url}/_stcore/metrics", timeout=10).read().decode()
        lines = [line for line in text.splitlines() if "UploadedFileManager" in line and not line.startswith("#")]
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def run_async(coroutine_function):
    """``asyncio.run`` in its own thread: playwright's sync API holds this thread's event loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_function())).result(120)


def _sign_in(browser, url: str, password: str):
    """The admin ``root`` signed in from a new browser context."""
    return _sign_in_as(browser, url, "root", password)


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_a_signed_out_client_clearing_the_cache_does_not_reset_the_sign_in_limit(team_server, browser):
    url, _, log, process = team_server
    for attempt in range(5):
        _sign_in(browser, url, f"guess-{attempt}").get_by_text("Wrong user name or password.").wait_for()
    _sign_in(browser, url, PASSWORD).get_by_text("Too many failed sign-ins").wait_for()

    async def clear_three_times() -> None:
        client = Client(url)
        ws, _ = await client.open_session()
        for _ in range(3):
            await client.send(ws, clear_cache=True)
        await client.send(ws, rerun=True)  # the server answers, so the three were handled before it
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
            if msg.WhichOneof("type") == "script_finished":
                break
        await ws.close()

    run_async(clear_three_times)
    assert log.read_text().count("refused a clear_cache message") == 3
    page = _sign_in(browser, url, PASSWORD)  # the right password: still locked, the limiter forgot nothing
    page.get_by_text("Too many failed sign-ins").wait_for()
    assert "Signed in as" not in page.inner_text("body")
    assert process.poll() is None  # the server is up for everyone else


def test_uploads_from_a_signed_out_session_are_refused_and_hold_nothing(team_server):
    url, _, _, process = team_server
    client = Client(url)

    async def attack() -> list[int]:
        ws, session_id = await client.open_session()
        codes = [client.upload(session_id) for _ in range(14)]
        await ws.close()
        return codes

    assert run_async(attack) == [403] * 14
    assert client.held_upload_bytes() == 0
    assert process.poll() is None


def test_an_upload_during_the_first_run_after_the_start_is_refused(team_server):
    """The guard is installed by the launcher (ogaudit.ui.serve) before the first request, not by the first page
    run: an upload sent the moment the first session is named, while its run still imports the app, is refused."""
    url = team_server[0]
    client = Client(url)

    async def race() -> int:
        ws, session_id = await client.open_session(first_message=True)
        code = client.upload(session_id, 1024)
        await ws.close()
        return code

    assert run_async(race) == 403


def test_a_granted_session_uploads_within_the_cap_and_its_files_go_with_its_socket(loopback_server):
    """The control: on a local-only server the same client may upload (so the refusal above is the gate), up to
    8 files per session; closing the socket frees them at once."""
    url, _, _, _ = loopback_server
    client = Client(url)

    async def upload_then_close() -> tuple[list[int], int]:
        ws, session_id = await client.open_session()
        codes = [client.upload(session_id) for _ in range(9)]
        held = client.held_upload_bytes()
        await ws.close()
        return codes, held

    codes, held = run_async(upload_then_close)
    assert codes == [204] * 8 + [413]
    assert held >= 8 * MB
    for _ in range(50):  # the server handles the close asynchronously
        if client.held_upload_bytes() == 0:
            break
        time.sleep(0.1)
    assert client.held_upload_bytes() == 0


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_media_goes_only_to_the_signed_in_browser(team_server, browser):
    url, _, _, _ = team_server
    page = _sign_in(browser, url, PASSWORD)
    page.get_by_text("Signed in as").wait_for()
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.locator("[data-testid='stImage'] img").first.wait_for()
    src = page.locator("[data-testid='stImage'] img").first.get_attribute("src")
    assert src.startswith("/media/") or "/media/" in src
    media = src if src.startswith("http") else f"{url}{src}"
    assert page.request.get(media).status == 200  # the signed-in browser (its cookie) gets it
    stranger = Client(url)  # a signed-out client with its own XSRF cookie from /_stcore/health
    with pytest.raises(urllib.error.HTTPError) as refused:
        stranger.opener.open(media, timeout=10)
    assert refused.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bare:
        urllib.request.urlopen(media, timeout=10)  # no cookie at all
    assert bare.value.code == 404
    other = browser.new_context().new_page()  # another browser, signed out
    other.goto(url)
    other.wait_for_selector(READY)
    assert other.request.get(media).status == 404

    page.get_by_role("tab", name="Export").click()  # a download made when clicked (Streamlit leaves it unmapped)
    with page.expect_download() as download:
        page.get_by_role("button", name="⬇ Decisions CSV").click()
    made = download.value.url
    assert "/media/" in made and download.value.path().read_text().startswith("sample_id")
    assert other.request.get(made).status == 404
    with pytest.raises(urllib.error.HTTPError) as stolen:
        stranger.opener.open(made, timeout=10)
    assert stolen.value.code == 404


def _sign_in_as(browser, url: str, name: str, password: str, forwarded_for: str | None = None):
    """``name`` signed in from a new browser context; with ``forwarded_for``, a browser behind a same-host proxy
    that adds ``X-Forwarded-For: <forwarded_for>`` to every request."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, extra_http_headers=headers)
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    page.wait_for_selector(READY)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(READY)
    return page


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_the_per_client_limit_works_behind_a_same_host_proxy(team_server, browser):
    """Every connection comes from 127.0.0.1 (the proxy); the client is the address the proxy forwards. A client
    guessing five names is locked out, even with the right password; another client behind the same proxy is not."""
    url = team_server[0]
    for i in range(5):  # five different names: no name reaches its own limit, the client does
        page = _sign_in_as(browser, url, f"guess{i}", "not the password", "203.0.113.9")
        page.get_by_text("Wrong user name or password.").wait_for()
    _sign_in_as(browser, url, "root", PASSWORD, "203.0.113.9").get_by_text("Too many failed sign-ins").wait_for()
    _sign_in_as(browser, url, "root", PASSWORD, "203.0.113.10").get_by_text("Signed in as").wait_for()


def _resident_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def test_widget_values_a_signed_out_client_sends_are_not_kept(team_server):
    """An attack run: a signed-out socket sent reruns carrying 2,000 made-up widget values of 12 kB each, and the
    server kept them (about 32 MB a message, without a plateau), because the sign-in page ended with st.stop(),
    which skips the clean-up of widget state a run did not use. The sign-in page now ends as a normal run."""
    url, _, _, process = team_server
    client = Client(url)

    async def flood() -> list[float]:
        ws, _ = await client.open_session()
        sizes = []
        for round_ in range(8):
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = ""
            for i in range(1000):
                widget = msg.rerun_script.widget_states.widgets.add()
                widget.id = f"$$ID-{i:032x}-{round_}"
                widget.string_value = "C" * 12_000
            await ws.send(msg.SerializeToString())
            while True:  # the run this message started has finished
                reply = ForwardMsg()
                reply.ParseFromString(await asyncio.wait_for(ws.recv(), 90))
                if reply.WhichOneof("type") == "script_finished":
                    break
            sizes.append(_resident_mb(process.pid))
        await ws.close()
        return sizes

    sizes = run_async(flood)
    # after the first two (buffers the server keeps for reuse), 6 more messages of 12 MB each: kept, they add
    # ~16 MB each (measured: 243 -> 339 MB); discarded, the memory is reused (243 -> 256 MB)
    assert sizes[-1] - sizes[1] < 45, f"resident MB after each message: {[round(s) for s in sizes]}"


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_a_signed_in_admin_uploads_from_their_browser_and_the_url_serves_no_one_else(team_server, browser, tmp_path):
    """The upload gate, end to end on a team server: the signed-in admin's own browser uploads (its XSRF token is
    the one its session was granted with); the same upload URL from a signed-out client with its own cookie is
    refused, so a URL read from a log cannot replace the admin's file."""
    url, _, _, _ = team_server
    page = _sign_in(browser, url, PASSWORD)
    page.get_by_text("Signed in as").wait_for()
    page.get_by_text("New audit", exact=True).first.click()
    page.get_by_text("Upload text table").click()
    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n" + "".join(f"review number {i},{'good' if i % 2 else 'bad'}\n" for i in range(20)))
    with page.expect_request(lambda request: "/_stcore/upload_file/" in request.url and request.method == "PUT") as put:
        page.locator(".st-key-setup-text-upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(
            str(table)
        )
    upload_url = put.value.url
    assert put.value.response().status == 204  # the admin's browser: accepted
    page.get_by_text("reviews.csv").wait_for()
    stranger = Client(url)
    request = urllib.request.Request(upload_url, data=b"EVIL", method="PUT", headers={"X-Xsrftoken": stranger.xsrf})
    with pytest.raises(urllib.error.HTTPError) as refused:
        stranger.opener.open(request, timeout=10)
    assert refused.value.code in (400, 403)


def test_the_metrics_answer_only_a_client_on_this_machine(team_server):
    """``/_stcore/metrics`` counts sessions and cached and uploaded bytes: a visitor from another machine (here
    behind the same-host proxy, its address in ``X-Forwarded-For``) gets 404; this machine keeps them."""
    url = team_server[0]
    local = urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10)
    assert local.status == 200 and b"active_sessions" in local.read()
    remote = urllib.request.Request(f"{url}/_stcore/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(remote, timeout=10)
    assert refused.value.code == 404
    health = urllib.request.Request(f"{url}/_stcore/health", headers={"X-Forwarded-For": "203.0.113.9"})
    assert urllib.request.urlopen(health, timeout=10).status == 200  # the rest of Streamlit's routes as before
