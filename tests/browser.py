"""Headless Debian Chromium driven by Selenium, for tests of zprof's interactive reports.

Only Debian's chromium and chromedriver are used: with both paths given, Selenium Manager never
runs, so nothing is downloaded (a downloaded browser does not start on this machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT_S = 20
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"needs Debian's chromium and chromium-driver ({', '.join(missing)} missing; `make test` installs them)"
    return None


def _processes_using(profile_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(profile_dir) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


@contextmanager
def headless_chromium(profile_dir: Path, width: int = 1300, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A Chrome driver on a fresh profile; on exit the browser is gone, or the test fails."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Leave a page's alert() open for the test to read, rather than dismissing it
    # when another command happens to run first.
    options.set_capability("unhandledPromptBehavior", "ignore")
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        driver.set_script_timeout(TIMEOUT_S)
        yield driver
    finally:
        driver.quit()
        # The profile directory is ours alone, so whatever still names it was started here.
        deadline = time.monotonic() + 10
        while (left := _processes_using(profile_dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in left:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        assert not left, f"chromium left {len(left)} process(es) running after quit"
        driver_process = getattr(service, "process", None)
        assert driver_process is None or driver_process.poll() is not None, "chromedriver still running"
