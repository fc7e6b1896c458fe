"""Browser tests: pytest-playwright drives Debian's chromium against pytest-django's live server.

The live server serves the static files through Django's finders (pytest-django's
``StaticFilesHandler``), so the pages load the same CSS and htmx as ``make demo``.
The clock runs in real time, because the templates show ages against the real time:
data that should look older is made under ``clock.frozen`` in the past (the clock is
process-wide, so the live server's thread sees a frozen clock too).
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Page, Response, expect
from pytest_django.live_server_helper import LiveServer

from portal.demo import DEMO_PASSWORD
from tests import factories

CHROMIUM = "/usr/bin/chromium"
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
VIEWPORT = {"width": 1400, "height": 900}
SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any], live_server: LiveServer) -> dict[str, Any]:
    return {**browser_context_args, "base_url": live_server.url, "viewport": VIEWPORT, "locale": "en-GB"}


@pytest.fixture(autouse=True)
def migration_rows(transactional_db: None) -> None:
    """The data migrations' rows (teams, queues, exception types, approval policies): the
    transactional test before may have flushed them. ``serialized_rollback`` cannot bring
    them back here: pytest-playwright keeps an event loop running, so Django's connection
    in the test is a context-local one, not the one that holds the serialized contents."""
    factories.migration_data()


class Portal:
    """One person's browser tab on the portal."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("response", self._check_static)

    def _check_static(self, response: Response) -> None:
        if "/static/" in response.url and response.status not in (200, 304):
            self.problems.append(f"{response.status} for {response.url}")

    def assert_assets_loaded(self) -> None:
        """The stylesheet applied and htmx running: served locally by the live server."""
        assert self.page.evaluate("typeof window.htmx") == "object"
        assert self.page.evaluate(
            """() => [...document.styleSheets].some(
                   s => (s.href || '').endsWith('/static/css/portal.css') && s.cssRules.length > 0)"""
        )

    def login(self, username: str, password: str = DEMO_PASSWORD) -> None:
        self.page.goto("/login/")
        self.assert_assets_loaded()
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page).to_have_url(re.compile(r"^https?://[^/]+/$"))
        self.assert_assets_loaded()

    def nav_links(self) -> list[str]:
        return self.page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()

    def shot(self, name: str, *, full_page: bool = False) -> None:
        """A screenshot for the documentation: the 1400 x 900 viewport, or the whole page."""
        self.page.wait_for_load_state("networkidle")
        self.page.mouse.move(0, 0)  # no hover effect in the picture
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)


@pytest.fixture
def portal(page: Page) -> Iterator[Portal]:
    tab = Portal(page)
    yield tab
    assert tab.problems == []
