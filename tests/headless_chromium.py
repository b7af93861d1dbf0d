"""A real headless Chromium for the tests of the course's static pages (the feature explorer,
the attribution-graph page), through Debian's chromium and chromedriver; skipped, saying
how to install them, where they are missing."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def headless_chromium(window_size: str) -> Iterator[webdriver.Chrome]:
    """A driver of a fresh, offline Chromium profile that keeps the browser console's log
    (for the tests that a page loads without errors); for a fixture to yield from."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium or chromedriver missing: apt-get install chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="course-page-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        f"--window-size={window_size}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page(browser: webdriver.Chrome, site: Path) -> webdriver.Chrome:
    """The browser, showing the page at `site` (an index.html on disk)."""
    browser.get(site.as_uri())
    return browser
