"""A real browser for the page's tests: Debian's chromium driven through its chromedriver by Selenium, offline
(no driver or browser download, no name resolved but loopback), with axe-core from this folder's npm package."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("BROWSER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BROWSER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # Every name fails to resolve but loopback: the page may load nothing from anywhere else.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,1000",
)


def missing() -> str:
    """What the browser tests lack here, or ""."""
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{what} is not installed ({path}): apt-get install chromium chromium-driver"
    if not AXE.exists():
        return f"axe-core is not installed: npm ci --prefix {HERE.relative_to(HERE.parent.parent)}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements-dev.txt"
    return ""


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    reason = missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path_factory.mktemp("chromedriver") / "log"))
    with pytest.MonkeyPatch.context() as patch:
        # Selenium Manager would fetch a driver or a browser of its own: it is told to stay offline, and given both.
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


#: The folders screenshots went to in this run, named at the end of pytest's report.
SAVED: list[Path] = []


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where each view's screenshot goes: named at the end of the run, so the CI log says where to find them."""
    folder = Path(os.environ.get("BROWSER_TEST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    SAVED.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter) -> None:
    for folder in SAVED:
        shots = sorted(folder.glob("*.png"))
        terminalreporter.write_line(f"screenshots of the page: {len(shots)} in {folder}")
