"""The served app in a real headless Chromium: a rater's session over loopback, a screenshot, and a search for
system names in everything the browser received (page text, HTML, requested URLs, audio bytes, WebSocket
messages) and in what a curious rater could try to fetch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
playwright_api = pytest.importorskip("playwright.sync_api")

from fluxbench.human_eval.storage import Responses  # noqa: E402
from fluxbench.human_eval.study import Study  # noqa: E402
from test_human_eval_support import make_study, secrets_of  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]
STARTUP_SECONDS = 90

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(autouse=True)
def chromium():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} missing: run scripts/install-browser.sh (make test does)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`fluxbench human-eval serve` on 127.0.0.1 and a free port; its process group is stopped afterwards."""
    study = make_study(tmp_path, raters={"beginner": 1, "expert": 1}, attention_checks=1)
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    command = [sys.executable, "-m", "fluxbench.cli", "human-eval", "serve", str(study), "--port", str(port),
               "--address", "127.0.0.1", "--db", f"sqlite:///{study / 'responses.sqlite'}"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGKILL) if server.poll() is None else None
            pytest.fail(f"streamlit did not come up: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        time.sleep(0.3)
    try:
        yield study, base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)
        log.close()


def test_rater_session_in_chromium_reveals_no_system(served, tmp_path):
    study, base = served
    secrets = secrets_of(study)
    plan = next(p for p in Study.load(study).raters.values() if p.group == "expert")
    urls: list[str] = []
    frames: list[bytes] = []

    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1400})
            page.set_default_timeout(30_000)
            page.on("request", lambda request: urls.append(request.url))

            def watch(socket_) -> None:
                socket_.on("framereceived", lambda payload: frames.append(
                    payload if isinstance(payload, bytes) else payload.encode()))
            page.on("websocket", watch)

            page.goto(f"{base}/?rater={plan.token}")
            page.get_by_text("Before you start").wait_for()
            for answer in ("None", "No", "Headphones", "No known hearing impairment"):
                page.get_by_text(answer, exact=True).click()
            page.get_by_role("button", name="Continue").click()

            total = len(plan.order)
            for number in range(1, 3):
                page.get_by_text(f"Clip {number} of {total}").wait_for()
                page.locator("audio").wait_for(state="attached")
                page.get_by_text("4 · Good", exact=True).click()
                page.get_by_text("3 · Partly", exact=True).click()
                page.get_by_role("button", name="Save and next →").click()
            page.get_by_text(f"Clip 3 of {total} · 2 rated").wait_for()
            page.locator("audio").wait_for(state="attached")
            screenshot = page.screenshot(path=str(tmp_path / "rating-page.png"), full_page=True)

            text, html = page.inner_text("body"), page.content()
            audio_urls = page.eval_on_selector_all("audio", "nodes => nodes.map(n => n.src)")
            audio_bytes = [page.request.get(url).body() for url in audio_urls]
            probes = {path: page.request.get(f"{base}/{path}") for path in (
                "study.json", "key.json", "raters.csv", "responses.sqlite", f"audio/{plan.order[0]}.wav",
                "app/static/key.json", "media/key.json", "_stcore/key.json")}
            probe_bodies = {path: reply.body() for path, reply in probes.items()}
        finally:
            browser.close()

    # What the rater sees and did.
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(screenshot) > 20_000
    assert "Warm lo-fi piano loop" in text and "Overall quality (OVL)" in text and "Excellent" in text
    stored = Responses(f"sqlite:///{study / 'responses.sqlite'}").ratings_of(plan.token)
    assert stored == {plan.order[0]: (4, 3), plan.order[1]: (4, 3)}

    # Nothing received names a system, a source folder or a source path ...
    received = {"page text": text, "HTML": html, "requested URLs": "\n".join(urls)}
    for where, content in received.items():
        leaked = [s for s in secrets if s in content]
        assert not leaked, f"{where} reveals {leaked}"
    socket_bytes = b"".join(frames)
    assert socket_bytes, "no WebSocket traffic was observed"
    assert not [s for s in secrets if s.encode() in socket_bytes], "WebSocket messages reveal a system"
    # The study folder's name is the experimenter's choice (it may well name the systems): never sent either.
    assert str(study).encode() not in socket_bytes and str(study).encode() not in html.encode()
    # ... audio is served from opaque content-hash URLs as plain WAV bytes without names in them ...
    assert audio_urls and all(u.startswith(f"{base}/media/") for u in audio_urls)
    for url, body in zip(audio_urls, audio_bytes):
        assert body[:4] == b"RIFF" and not [s for s in secrets if s.encode() in body], url
        assert Path(url).stem not in {Path(s).stem for s in secrets}
    # ... and the study's files cannot be fetched from the server.
    for path, body in probe_bodies.items():
        assert not [s for s in secrets if s.encode() in body], f"/{path} reveals a system"
        assert b"attention_check" not in body and b"SQLite format" not in body, path
    # Only loopback traffic.
    assert all(u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) for u in urls), \
        [u for u in urls if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1"))]
