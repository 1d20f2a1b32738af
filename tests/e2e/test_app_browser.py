"""``doorless app`` in a real browser: Debian's Chromium, headless, driven by Playwright.

A real ``doorless server`` process and one ``doorless app`` process per device; each user in
a browser context of their own (separate cookies and storage, like separate browser profiles).
Everything is done through the page, as a person would: create accounts, chat (with a message
full of markup that must stay text), send and download a file, make a group with a third user,
link a second device for bob; and hold an audio and a video call between two browsers, each
side decoding the other's frames. With ``DOORLESS_SCREENSHOTS=DIR`` the main screens are saved
there (``docs/app/`` holds the ones ``docs/app.md`` shows).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import ServerProcess, doorless_command

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSPHRASE = "correct horse battery staple"
HOSTILE = '<img src=x onerror="document.title=1"><script>document.title=2</script> **hi**'


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        message = "Chromium is missing: scripts/system-packages installs it (Debian: chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()


@dataclass
class AppProcess:
    """``doorless --profile DIR --json app --no-browser``, its link read from its first line."""

    profile: Path
    log: Path
    process: subprocess.Popen[str] | None = None
    url: str = ""
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def start(self) -> str:
        env = {k: v for k, v in os.environ.items() if k != "DOORLESS_PASSPHRASE"}
        self.process = subprocess.Popen(
            [*doorless_command(), "--profile", str(self.profile), "--json", "app", "--no-browser"],
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        out = self.process.stdout
        assert out is not None
        threading.Thread(target=lambda: [self.lines.put(x) for x in out], daemon=True).start()
        try:
            first = json.loads(self.lines.get(timeout=60))
        except queue.Empty:
            raise AssertionError(f"doorless app did not start:\n{self.log.read_text()}") from None
        assert first["type"] == "app_started"
        self.url = first["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/open\?key=[A-Za-z0-9_-]{43}", self.url)
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("app")
    # With the QUIC relay on (the clients fall back to its WebSocket when UDP fails).
    server = ServerProcess(root / "server", root / "server.log", args=("--relay-port", "0"))
    server.start()
    apps: dict[str, AppProcess] = {}
    try:
        yield {"server": server, "apps": apps, "root": root}
    finally:
        for app in apps.values():
            app.stop()
        server.stop()


def no_page_errors(world: dict[str, object]) -> None:
    errors = {k: v for k, v in world.get("page_errors", {}).items() if v}
    assert not errors, f"script errors in the page: {errors}"


def shot(page: object, name: str) -> None:
    folder = os.environ.get("DOORLESS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_app(world: dict[str, object], browser: object, name: str, viewport: dict[str, int]):
    root = world["root"]
    assert isinstance(root, Path)
    app = AppProcess(root / name, root / f"{name}.log")
    world["apps"][name] = app
    url = app.start()
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors = world.setdefault("page_errors", {}).setdefault(name, [])
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    # The key left the address bar: the page lives at / with the session cookie.
    assert page.url.endswith(":" + url.split(":")[2].split("/")[0] + "/")
    return page


def assert_labelled(page) -> None:
    """Every control has a name a screen reader can say (a label, text or aria-label)."""
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("button, input, select, textarea")]
            .filter((el) => !el.closest("[hidden]") && el.type !== "hidden")
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                            && !el.textContent.trim())
            .map((el) => el.outerHTML)"""
    )
    assert unnamed == []


def create_account(page, server_url: str, username: str) -> None:
    form = page.locator("#form-create")
    form.get_by_label("Server", exact=True).fill(server_url)
    form.get_by_label("Username").fill(username)
    form.get_by_label("Name of this device").fill(f"{username}'s laptop")
    form.get_by_label("Passphrase").fill(PASSPHRASE)
    form.get_by_role("button", name="Create account").click()
    playwright_api.expect(page.locator("#me")).to_have_text(f"@{username}", timeout=30_000)


def conversation(page, title: str):
    button = page.locator("#conversations button", has_text=title)
    playwright_api.expect(button).to_be_visible(timeout=30_000)
    button.click()
    playwright_api.expect(page.locator("#conv-title")).to_have_text(title)


def send(page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send").click()


def expect_message(page, text: str):
    item = page.locator("#messages .message .text", has_text=text)
    playwright_api.expect(item).to_be_visible(timeout=30_000)
    return item


def dialog_ok(page, label: str, *, closes: bool = True) -> None:
    page.locator("#dialog").get_by_role("button", name=label).click()
    if closes:
        playwright_api.expect(page.locator("#dialog")).not_to_be_visible(timeout=30_000)


def test_two_people_chat_share_a_file_make_a_group_and_link_a_device(
    world: dict[str, object], browser: object, tmp_path: Path
) -> None:
    server = world["server"]
    assert isinstance(server, ServerProcess)
    desktop = {"width": 1100, "height": 720}
    alice = open_app(world, browser, "alice", desktop)
    bob = open_app(world, browser, "bob", desktop)
    carol = open_app(world, browser, "carol", {"width": 390, "height": 760})  # a phone's width
    shot(alice, "onboarding")

    for page, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        create_account(page, server.url, name)

    # alice writes to bob; bob gets a message request first, accepts it.
    alice.get_by_role("button", name="New chat").click()
    alice.locator("#dialog").get_by_label("Username").fill("bob")
    dialog_ok(alice, "Start")
    playwright_api.expect(alice.locator("#conv-title")).to_have_text("@bob")
    send(alice, HOSTILE)
    expect_message(alice, "onerror")
    requests = bob.locator("#requests li", has_text="@alice")
    playwright_api.expect(requests).to_be_visible(timeout=30_000)
    requests.get_by_role("button", name="Accept").click()
    conversation(bob, "@alice")
    shown = expect_message(bob, "onerror")
    # Markup from a peer stays text: no element made, no script run.
    assert shown.text_content() == HOSTILE
    assert bob.locator("#messages img").count() == 0
    assert bob.locator("#messages script").count() == 0
    assert bob.title() == "Doorless"

    # From the keyboard: Enter in the message box sends.
    bob.get_by_label("Message", exact=True).fill("hi alice, got it")
    bob.get_by_label("Message", exact=True).press("Enter")
    expect_message(alice, "hi alice, got it")

    # Rich messages: a reply quotes, a reaction shows on both sides, an edit is marked, a
    # delete empties the message everywhere; typing and "read" show on the other side.
    hostile_item = bob.locator("#messages .message", has_text="onerror").first
    hostile_item.get_by_role("button", name="Reply").click()
    playwright_api.expect(bob.locator("#replying")).to_be_visible()
    send(bob, "replying here")
    reply = alice.locator("#messages .message", has_text="replying here")
    playwright_api.expect(reply.locator("blockquote")).to_contain_text("onerror", timeout=30_000)
    reply.get_by_role("button", name="React").click()
    alice.get_by_role("button", name="React with 👍").click()
    chip = bob.locator("#messages .message", has_text="replying here").locator(".chip")
    playwright_api.expect(chip).to_have_text("👍 1", timeout=30_000)
    mine = alice.locator("#messages .message.outgoing", has_text="onerror").first
    mine.get_by_role("button", name="Edit").click()
    alice.locator("#dialog textarea").fill("a calmer first message")
    dialog_ok(alice, "Save")
    edited = bob.locator("#messages .message", has_text="a calmer first message")
    playwright_api.expect(edited).to_contain_text("edited", timeout=30_000)
    send(alice, "oops, wrong chat")
    oops = bob.locator("#messages .message", has_text="oops, wrong chat")
    playwright_api.expect(oops).to_be_visible(timeout=30_000)
    alice.locator("#messages .message", has_text="oops, wrong chat").get_by_role(
        "button", name="Delete"
    ).click()
    dialog_ok(alice, "Delete")
    playwright_api.expect(bob.locator("#messages .text.deleted")).to_have_count(1, timeout=30_000)
    assert bob.locator("#messages", has_text="oops, wrong chat").count() == 0
    alice.get_by_label("Message", exact=True).fill("typing someth")
    playwright_api.expect(bob.locator("#typing")).to_contain_text(
        "@alice is typing", timeout=30_000
    )
    alice.get_by_label("Message", exact=True).fill("")
    # bob has the conversation open: what he received is read, and alice sees it.
    playwright_api.expect(
        alice.locator("#messages .message.outgoing", has_text="a calmer first message")
    ).to_contain_text("read", timeout=30_000)

    # The safety number, with its QR code, the same digits on both sides.
    digits = {}
    for page in (alice, bob):
        page.get_by_role("button", name="Safety number").click()
        number = page.locator("#dialog .safety-number")
        playwright_api.expect(number).not_to_be_empty(timeout=30_000)
        digits[page] = number.text_content()
        assert page.locator("#dialog img[alt='QR code of the safety number']").count() == 1
        page.locator("#dialog").get_by_role("button", name="Close").click()
    assert digits[alice] == digits[bob]
    assert_labelled(alice)

    # A local nickname, shown as one (never sent), and a search of alice's own history.
    alice.get_by_role("button", name="Nickname").click()
    alice.locator("#dialog").get_by_label("Your name for @bob").fill("Bobby")
    dialog_ok(alice, "Save")
    playwright_api.expect(alice.locator("#conv-title")).to_have_text("~Bobby (@bob)")
    alice.get_by_label("Search your messages").fill("alice got")
    alice.get_by_label("Search your messages").press("Enter")
    hit = alice.locator("#dialog ul.results li", has_text="~Bobby (@bob)")
    playwright_api.expect(hit).to_have_count(1, timeout=30_000)
    assert hit.locator("mark").all_text_contents() == ["alice", "got"]
    dialog_ok(alice, "Close")

    # A file, with its bytes checked after the download.
    document = tmp_path / "plan.txt"
    payload = os.urandom(200_000)
    document.write_bytes(payload)
    alice.locator("#compose-file").set_input_files(str(document))
    playwright_api.expect(alice.locator("#messages .file", has_text="plan.txt")).to_be_visible(
        timeout=30_000
    )
    file_item = bob.locator("#messages .message", has_text="plan.txt")
    playwright_api.expect(file_item).to_be_visible(timeout=30_000)
    with bob.expect_download() as download_info:
        file_item.get_by_role("button", name="Download").click()
    saved = tmp_path / "downloaded"
    download_info.value.save_as(saved)
    assert saved.read_bytes() == payload
    shot(bob, "conversation")

    # A group of three; carol (at a phone's width) answers in it.
    alice.get_by_role("button", name="New group").click()
    alice.locator("#dialog").get_by_label("Group name").fill("trip")
    alice.locator("#dialog").get_by_label("Members").fill("bob, carol")
    dialog_ok(alice, "Create")
    playwright_api.expect(alice.locator("#conv-title")).to_have_text("trip", timeout=30_000)
    send(alice, "who is in?")
    carol_request = carol.locator("#requests li", has_text="@alice")
    playwright_api.expect(carol_request).to_be_visible(timeout=30_000)
    carol_request.get_by_role("button", name="Accept").click()
    conversation(carol, "trip")
    expect_message(carol, "who is in?")
    send(carol, "me!")
    shot(carol, "phone")
    for page in (alice, bob):
        conversation(page, "trip")
        expect_message(page, "me!")
    playwright_api.expect(alice.locator("#conv-members")).to_contain_text("3 members")

    # bob links a second device from a new, empty profile, approving it in his first window.
    bob2 = open_app(world, browser, "bob2", desktop)
    bob2.get_by_role("tab", name="Link to my account").click()
    form = bob2.locator("#form-link")
    form.get_by_label("Server", exact=True).fill(server.url)
    form.get_by_label("Your username").fill("bob")
    form.get_by_label("Passphrase").fill(PASSPHRASE)
    form.get_by_role("button", name="Link this device").click()
    code = bob2.locator("#link-code")
    playwright_api.expect(code).not_to_be_empty(timeout=30_000)
    fingerprint = bob2.locator("#link-fingerprint").text_content()
    shot(bob2, "link")
    bob.get_by_role("button", name="Devices").click()
    bob.locator("#dialog").get_by_label("Link code").fill(code.text_content() or "")
    dialog_ok(bob, "Next", closes=False)
    playwright_api.expect(bob.locator("#dialog .mono.big")).to_have_text(fingerprint or "")
    dialog_ok(bob, "Same fingerprint: approve")
    playwright_api.expect(bob2.locator("#me")).to_have_text("@bob", timeout=60_000)
    # The new device takes part from now on.
    conversation(alice, "trip")
    send(alice, "welcome, second device")
    conversation(bob2, "trip")
    expect_message(bob2, "welcome, second device")
    no_page_errors(world)


def call_counts(page) -> dict[str, float]:
    call = page.locator("#call")
    return {
        name: float(call.get_attribute(f"data-{name}") or 0)
        for name in ("audio-decoded", "video-decoded", "max-level")
    }


def wait_for_media(page, *, video: bool) -> dict[str, float]:
    """Until the page decoded the other side's audio (and video), from its own counters."""
    deadline = 60_000
    step = 500
    counts: dict[str, float] = {}
    for _ in range(deadline // step):
        counts = call_counts(page)
        enough_audio = counts["audio-decoded"] >= 50 and counts["max-level"] > 0.01
        if enough_audio and (not video or counts["video-decoded"] >= 10):
            return counts
        page.wait_for_timeout(step)
    raise AssertionError(f"media did not arrive: {counts}")


@pytest.mark.parametrize("video", [False, True], ids=["audio", "video"])
def test_a_call_between_two_browsers(
    world: dict[str, object], browser: object, video: bool
) -> None:
    server = world["server"]
    assert isinstance(server, ServerProcess)
    desktop = {"width": 1000, "height": 700}
    names = ("dave", "erin") if video else ("frank", "grace")
    caller = open_app(world, browser, names[0], desktop)
    callee = open_app(world, browser, names[1], desktop)
    for page, name in ((caller, names[0]), (callee, names[1])):
        create_account(page, server.url, name)
    caller.get_by_role("button", name="New chat").click()
    caller.locator("#dialog").get_by_label("Username").fill(names[1])
    dialog_ok(caller, "Start")
    send(caller, "call me")
    request = callee.locator("#requests li", has_text=f"@{names[0]}")
    playwright_api.expect(request).to_be_visible(timeout=30_000)
    request.get_by_role("button", name="Accept").click()
    conversation(callee, f"@{names[0]}")

    caller.get_by_role("button", name="Video call" if video else "Call", exact=True).click()
    incoming = callee.locator("#incoming")
    playwright_api.expect(incoming).to_be_visible(timeout=30_000)
    incoming.get_by_role(
        "button", name="Answer with video" if video else "Answer", exact=True
    ).click()
    for page in (caller, callee):
        playwright_api.expect(page.locator("#call")).to_be_visible()

    # Each side decodes the other's frames (WebCodecs in the page, SFrame in the client).
    for page in (caller, callee):
        counts = wait_for_media(page, video=video)
        assert counts["max-level"] > 0.01, counts  # the fake microphone's beeps, not silence
    code = caller.locator("#call-code")
    playwright_api.expect(code).not_to_have_text("…")
    playwright_api.expect(callee.locator("#call-code")).to_have_text(code.text_content() or "")
    if video:
        shot(callee, "call")
    caller.get_by_role("button", name="Hang up").click()
    playwright_api.expect(caller.locator("#call")).to_be_hidden()
    playwright_api.expect(callee.locator("#call")).to_be_hidden(timeout=30_000)
    no_page_errors(world)
