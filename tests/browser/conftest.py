"""Browser tests: Debian's chromium, driven by Playwright's sync API, against a real Daphne (and Celery).

Every test under tests/browser/ is marked `browser` (deselect with `-m "not browser"`) and needs Chromium:
Debian's `/usr/bin/chromium`, or the one named by CHATDESK_CHROMIUM. Without one the tests are skipped with
the reason, unless CHATDESK_REQUIRE_BROWSER=1 (as in .ci/run), which makes them fail. Playwright's own
browser downloads are never used.

How to write one (see test_desk_flow.py):

    pytestmark = pytest.mark.browser   # optional: the conftest marks everything here

    def test_something(customer_page, agent1_page, agent1):
        customer_page.goto("/chat/")                    # URLs are relative to the live Daphne
        ...
        expect(agent1_page.get_by_role("list", name="Queue")).to_contain_text("Thandi")

Fixtures (details in each docstring):
- `daphne_server` (module): the live web server; `.url`, `.restart()`, `.log_tail()`.
- `site_url` (module): the base URL of the pages: Daphne's, unless a module puts a proxy in front.
- `celery_worker_and_beat` (module): a worker (`--pool solo`) and beat; started only if a test asks for it.
- `live_server_env` (module): extra environment for those processes; override it in a test module, e.g.
  short Chat 2 Pay windows. Daphne and Celery are started once per module with it.
- `new_page` (function): factory for pages in fresh, independent browser contexts (separate cookies).
- `customer_page`, `agent1_page`, `agent2_page`: ready pages; the agents are logged in on /desk/, live.
- `agent1`, `agent2`: the agents' users ("Agent One", "Agent Two"; password `pages.PASSWORD`).
Helpers in tests/browser/pages.py: `log_in`, `expect_live`, `call_in_thread` (for `desk.actions` calls made
from a test while Playwright runs), `mark_page_as_not_reloaded` / `expect_not_reloaded`, and
`record_websockets` / `drop_websockets` / `restore_network` to cut a page's websockets and let it reconnect.

Data: the live processes see only committed rows, so every test using a page runs with `transactional_db`
(the page fixtures request it); tables are emptied after each test, which also drops the `agents` and
`supervisors` groups created by the data migration (the factories re-create them on demand).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.live_processes import CeleryProcesses, DaphneServer, live_environment
from tests.browser.pages import expect_live, log_in
from tests.factories import AgentFactory

BROWSER_DIR = Path(__file__).resolve().parent
DEBIAN_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


# --- Marking and reporting ----------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember each phase's outcome (for failure screenshots) and attach the live processes' log tails."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.failed and BROWSER_DIR in Path(str(item.path)).parents:
        for name in ("daphne_server", "celery_worker_and_beat"):
            live = getattr(item, "funcargs", {}).get(name)
            processes = live.processes if isinstance(live, CeleryProcesses) else [live] if live else []
            for process in processes:
                report.sections.append((f"{process.name} log (last lines)", process.log_tail()))
    return report


_REPORTS = pytest.StashKey[dict]()


# --- Chromium -----------------------------------------------------------------------------------------------


def _find_chromium() -> tuple[str | None, str]:
    """(path, reason it was not found)."""
    named = os.environ.get("CHATDESK_CHROMIUM")
    if named:
        if os.access(named, os.X_OK) and Path(named).is_file():
            return named, ""
        return None, f"CHATDESK_CHROMIUM={named} is not an executable file"
    for candidate in (DEBIAN_CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, f"no {DEBIAN_CHROMIUM}"


@pytest.fixture(scope="session", autouse=True)
def chromium_executable() -> str:
    """Path of the Chromium to drive. Skips the browser tests if there is none (fails if it is required)."""
    path, why = _find_chromium()
    if path:
        return path
    message = (
        f"Debian chromium not found ({why}): apt-get install -y chromium "
        "(or set CHATDESK_CHROMIUM=/path/to/chromium)"
    )
    if os.environ.get("CHATDESK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CHATDESK_REQUIRE_BROWSER=1 but {message}", pytrace=False)
    pytest.skip(message)


# --- Live processes -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_redis():
    """Overrides the root conftest's per-test FLUSHDB, which would pull state from under the live processes.

    The running Daphne and Celery keep state in Redis that they set up only once (Celery's queue bindings,
    which kombu declares once per process; channel-layer groups of sockets that are open). Browser tests
    keep apart through their own data instead; Redis is still flushed by the other tests.
    """


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    """Extra environment variables for Daphne and Celery in this module (none by default).

    Override it in a test module, e.g.::

        @pytest.fixture(scope="module")
        def live_server_env():
            return {"CHAT2PAY_CLICK_WINDOW_SECONDS": "3", "CHAT2PAY_PAY_WINDOW_SECONDS": "5"}

    The test process itself keeps its own settings (use the `settings` fixture to match them there).
    """
    return {}


@pytest.fixture(scope="module")
def _live_log_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(f"live-{request.module.__name__.rsplit('.', 1)[-1]}")


@pytest.fixture(scope="module")
def daphne_server(django_db_setup, live_server_env, _live_log_dir) -> Iterator[DaphneServer]:
    """A real Daphne on 127.0.0.1:<free port> serving `chatdesk.asgi:application`, for this test module.

    It uses the test database (pytest-django's `test_…`) and the test process's REDIS_URL, with DEBUG on
    so WhiteNoise serves static files. `daphne_server.url` is the base URL (pages from `new_page` already
    use it as their base URL); `daphne_server.restart()` stops and restarts it on the same port, for
    reconnect tests; `log_tail()` shows its output (also attached to a failing test's report).
    """
    server = DaphneServer(env=live_environment(live_server_env), log_path=_live_log_dir / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def celery_worker_and_beat(django_db_setup, live_server_env, _live_log_dir) -> Iterator[CeleryProcesses]:
    """A real Celery worker (`--pool solo`) and beat against the test database and Redis, for this module.

    Started only when a test asks for it; ready when the worker answers a control ping and beat has written
    its heartbeat. Tasks queued by Daphne, by the worker or by the test process (through `call_in_thread`,
    with `delay_on_commit`) run here; beat runs `CELERY_BEAT_SCHEDULE`. `.worker` / `.beat` are the
    processes (`.log_tail()`); tasks left over from earlier tests of the module may still run.
    """
    celery = CeleryProcesses(env=live_environment(live_server_env), log_dir=_live_log_dir)
    try:
        celery.start()
        yield celery
    finally:
        celery.stop()


# --- Playwright ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_browser(chromium_executable: str) -> Iterator[Browser]:
    """The launched Chromium (Playwright sync API), one per test module.

    Playwright's sync API leaves an asyncio loop registered as running in this thread, which makes Django
    refuse ORM calls ("You cannot call this from an async context"). Only for the lifetime of this fixture,
    and only in the test process, DJANGO_ALLOW_ASYNC_UNSAFE is set, so factories and assertions on the
    database work in browser tests; the servers never get it (see `live_environment`).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
        finally:
            playwright.stop()


@pytest.fixture(scope="module")
def site_url(daphne_server: DaphneServer) -> str:
    """Where the pages' relative URLs go: the live Daphne. A module may override it to put something in
    front (test_production_shape.py: nginx, with gunicorn for the HTTP)."""
    return daphne_server.url


@pytest.fixture
def new_page(
    playwright_browser: Browser, site_url: str, transactional_db, request, tmp_path_factory
) -> Iterator[Callable[[str], Page]]:
    """Factory: `new_page("customer")` opens a page in its own fresh browser context (own cookies/session).

    Relative URLs go to `site_url`, the live Daphne unless the module says otherwise (`page.goto("/chat/")`).
    Each page records uncaught JavaScript errors and alert/prompt dialogs: the test fails at teardown if any
    happened, so an injected script or a broken realtime.js cannot pass unnoticed; confirm() dialogs
    (hx-confirm) are accepted. When the test fails, a screenshot of every page is saved and its path
    printed. Contexts close when the test ends.
    """
    contexts: list[tuple[str, BrowserContext, Page]] = []
    problems: list[str] = []

    def make(label: str) -> Page:
        context = playwright_browser.new_context(base_url=site_url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"{label}: uncaught JavaScript error: {error}"))

        def on_dialog(dialog):
            if dialog.type == "confirm":  # e.g. hx-confirm on "Close chat": say yes, as the person would
                dialog.accept()
                return
            problems.append(f"{label}: unexpected {dialog.type} dialog: {dialog.message!r}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        contexts.append((label, context, page))
        return page

    yield make

    call_report = request.node.stash.get(_REPORTS, {}).get("call")
    if call_report is not None and call_report.failed:
        shots = tmp_path_factory.mktemp("screenshots")
        for label, _context, page in contexts:
            path = shots / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', request.node.name)}-{label}.png"
            try:
                page.screenshot(path=path, full_page=True)
                print(f"screenshot of {label} ({page.url}): {path}")  # noqa: T201 (shown with the failure)
            except Exception as error:  # noqa: BLE001 (a dead page must not hide the real failure)
                print(f"no screenshot of {label}: {error}")  # noqa: T201
    for _label, context, _page in contexts:
        context.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def agent1(transactional_db):
    """The agent `agent1` ("Agent One"), committed so the live server sees it."""
    return AgentFactory(username="agent1", first_name="Agent", last_name="One")


@pytest.fixture
def agent2(transactional_db):
    """The agent `agent2` ("Agent Two"), committed so the live server sees it."""
    return AgentFactory(username="agent2", first_name="Agent", last_name="Two")


@pytest.fixture
def customer_page(new_page) -> Page:
    """A fresh page for a customer (no login); go to "/chat/" to start a chat."""
    return new_page("customer")


def _desk_page(new_page, user) -> Page:
    page = new_page(user.username)
    log_in(page, user.username)
    expect(page).to_have_url(re.compile(r"/desk/$"))
    expect_live(page)
    return page


@pytest.fixture
def agent1_page(new_page, agent1) -> Page:
    """agent1 logged in through the login form, on /desk/ with a live websocket."""
    return _desk_page(new_page, agent1)


@pytest.fixture
def agent2_page(new_page, agent2) -> Page:
    """agent2 logged in through the login form, on /desk/ with a live websocket."""
    return _desk_page(new_page, agent2)
