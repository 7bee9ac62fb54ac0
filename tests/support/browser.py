"""Headless Chromium for the console's browser tests and screenshots: Debian's `chromium` driven
through its `chromium-driver` by Selenium, offline.

Selenium Manager never runs: the driver's path is given to `Service`, so Selenium skips it, and
SE_OFFLINE is set in case anything reaches it anyway (it would fail instead of downloading).
Missing packages skip the tests saying which to install; with MAQSAFY_REQUIRE_ALL=1 (CI) they
fail instead (`services.require`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.services import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 800)
WAIT = 30.0  # seconds a page condition may take before the test fails naming it (a loaded CI)


def installed() -> str | None:
    """None when both packages are there, else the one line saying what to install."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        return (
            f"browser tests: {' and '.join(missing)} missing "
            "(apt-get install chromium chromium-driver)"
        )
    return None


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator[WebDriver]:
    """A headless Chromium with its own throw-away profile, quit on exit."""
    why = installed()
    require(why is None, why or "")
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = str(CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="maqsafy-chromium-") as profile:
        for arg in (
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            driver.set_page_load_timeout(30)
            # --window-size is the window; the page's viewport is made exactly `window` too
            # (screenshots are that size), through the DevTools protocol, not page script.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False},
            )
            yield driver
        finally:
            driver.quit()


class Page:
    """One signed-in (or not) tab on the console at `url`: open, click, wait on what shows."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url.rstrip("/")

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def path(self) -> str:
        """The current address without the console's origin (`/failed?run=3`)."""
        return self.driver.current_url.removeprefix(self.url)

    def wait(self, css: str, what: str = "") -> WebElement:
        """The element `css` once it is visible."""
        return WebDriverWait(self.driver, WAIT).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, css)),
            f"{what or css} did not show on {self.driver.current_url}",
        )

    def gone(self, css: str, what: str = "") -> None:
        WebDriverWait(self.driver, WAIT).until(
            ec.invisibility_of_element_located((By.CSS_SELECTOR, css)),
            f"{what or css} is still on {self.driver.current_url}",
        )

    def at(self, path: str) -> None:
        """Wait until the address (after redirects) starts with `path`."""
        WebDriverWait(self.driver, WAIT).until(
            lambda d: d.current_url.startswith(self.url + path),
            f"never reached {path}",
        )

    def click(self, css: str) -> None:
        """Click `css` and wait for the page it leads to (the old page goes stale). A page
        that reloaded itself under the click (the live Overview) is clicked again."""
        for attempt in range(3):
            element = self.wait(css)
            old = self.driver.find_element(By.TAG_NAME, "html")
            try:
                element.click()
            except WebDriverException as exc:
                if attempt == 2 or not _reloaded_under(exc):
                    raise
                continue
            WebDriverWait(self.driver, WAIT).until(ec.staleness_of(old), f"{css} led nowhere")
            return

    def sign_in(self, name: str, password: str) -> None:
        """Fill the sign-in form and submit it (callers wait on what the answer should show)."""
        self.open("/signin")
        self.wait("form.signin input[name=name]").send_keys(name)
        self.driver.find_element(By.CSS_SELECTOR, "form.signin input[name=password]").send_keys(
            password
        )
        self.click("form.signin button[type=submit]")

    def sign_out(self) -> None:
        self.click("form.signout button[type=submit]")
        self.wait("form.signin", "the sign-in form")

    def text(self, css: str = "main") -> str:
        for _ in range(2):
            try:
                return self.wait(css).text
            except WebDriverException as exc:  # the page reloaded itself: read it again
                if not _reloaded_under(exc):
                    raise
        return self.wait(css).text


def _reloaded_under(exc: WebDriverException) -> bool:
    """Whether `exc` says the element's page was replaced (a page that reloads itself: the
    live Overview, a run page at its end). Chromium says it either way."""
    return isinstance(exc, StaleElementReferenceException) or (
        "does not belong to the document" in str(exc.msg or "")
    )
