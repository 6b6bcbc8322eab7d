"""The page at ``/`` in a real headless Chromium (Selenium), against a real ``textrec serve``.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
without them the tests are skipped, unless ``TEXTREC_REQUIRE`` names ``browser`` (as
``.ci/run`` does).
Screenshots at desktop and phone width are written to the test's tmp folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import copy_database, required_parts, stored_events
from textrec import Store

from .live_server import serve

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CORPUS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    if "browser" in required_parts():
        raise RuntimeError(
            f"TEXTREC_REQUIRE names browser, but {CHROMIUM} and {CHROMEDRIVER} are missing "
            f"(apt-get install chromium chromium-driver)"
        )
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser


@pytest.fixture(scope="module")
def base_url(wikinews_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = copy_database(wikinews_db, tmp_path_factory.mktemp("browser"))
    with serve(url) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@contextlib.contextmanager
def chromium(*, do_not_track: bool = False) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile; ``do_not_track`` stubs the signal, which
    headless Chromium does not send by itself."""
    profile = tempfile.mkdtemp(prefix="textrec-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    if do_not_track:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": DO_NOT_TRACK},
        )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, seconds: float = 15) -> WebDriverWait[WebDriver]:
    # The page replaces elements as answers arrive: an element found a moment ago can be gone.
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def open_page(driver: WebDriver, base_url: str, width: int, height: int) -> None:
    driver.set_window_size(width, height)
    driver.get(f"{base_url}/")
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#docs a")) == 20)


def check_related_after_click(driver: WebDriver, link_text_id: str) -> list[str]:
    link = driver.find_element(By.CSS_SELECTOR, f'#docs a[data-id="{link_text_id}"]')
    title = link.text.splitlines()[0]
    link.click()
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#related li.rel")) == 10)
    wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#doc h2"), title))
    assert driver.find_element(By.CSS_SELECTOR, "#doc .text").text.strip()
    assert "selected" in link.get_attribute("class")  # type: ignore[operator]
    items = driver.find_elements(By.CSS_SELECTOR, "#related li.rel")
    ids = [li.get_attribute("data-id") or "" for li in items]
    assert link_text_id not in ids
    scores = []
    for li in items:
        score = li.find_element(By.CSS_SELECTOR, ".score").text
        assert score.startswith("score ")
        scores.append(float(score.split()[1]))
    # The related mode's score (pivoted BM25) is positive, and the list is ranked by it.
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    # Related posts of a news article share key terms with it.
    assert any(li.find_elements(By.CSS_SELECTOR, ".terms .term") for li in items)
    return ids


def test_click_a_post_shows_its_related_posts(
    browser: WebDriver, base_url: str, tmp_path: Path
) -> None:
    import json
    import urllib.request

    open_page(browser, base_url, 1280, 900)
    assert "644 posts" in browser.find_element(By.ID, "count").text
    first = browser.find_element(By.CSS_SELECTOR, "#docs a").get_attribute("data-id") or ""
    ids = check_related_after_click(browser, first)
    with urllib.request.urlopen(f"{base_url}/documents/{first}/similar?k=10") as r:
        expected = [m["id"] for m in json.load(r)["results"]]
    assert ids == expected
    # Following a related post shows that post and its own related posts.
    browser.find_element(By.CSS_SELECTOR, "#related li.rel a").click()
    wait(browser).until(lambda d: d.current_url.endswith(f"#{ids[0]}"))
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "#doc .id").text == ids[0])
    browser.save_screenshot(str(tmp_path / "desktop.png"))
    # No horizontal scroll bar at desktop width.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )


def test_list_is_paged_and_searchable(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url, 1280, 900)
    page1 = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "#docs a")]
    assert browser.find_element(By.ID, "prev").get_attribute("disabled")
    browser.find_element(By.ID, "next").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "page").text.startswith("2 /"))
    page2 = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "#docs a")]
    assert len(page2) == 20 and not set(page1) & set(page2)
    # Search by a word of a title.
    title = browser.find_element(By.CSS_SELECTOR, "#docs a").text.splitlines()[0]
    word = max(title.split(), key=len)
    box = browser.find_element(By.ID, "q")
    box.send_keys(word)
    wait(browser).until(lambda d: "match" in d.find_element(By.ID, "count").text)
    found = browser.find_elements(By.CSS_SELECTOR, "#docs a")
    assert 1 <= len(found) <= 20
    assert all(word in a.text.splitlines()[0] for a in found)


def test_phone_width(browser: WebDriver, base_url: str, tmp_path: Path) -> None:
    open_page(browser, base_url, 390, 844)
    first = browser.find_element(By.CSS_SELECTOR, "#docs a").get_attribute("data-id") or ""
    check_related_after_click(browser, first)
    # One column: the list, then the post, then its related posts, without sideways scrolling.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    lst, doc, rel = (
        browser.find_element(By.CSS_SELECTOR, sel).rect for sel in (".list", ".doc", ".related")
    )
    assert lst["y"] < doc["y"] < rel["y"]
    assert doc["width"] <= 390 and rel["width"] <= 390
    browser.save_screenshot(str(tmp_path / "phone.png"))
    browser.set_window_size(390, 3000)
    browser.save_screenshot(str(tmp_path / "phone-full.png"))


def raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET a request target byte for byte (no client-side path normalisation)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize(
    "target",
    [
        "/static/../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/server.py",
        "/static/../server.py",
        "/static//etc/passwd",
        "/../../etc/passwd",
        "/static/..\\..\\..\\etc\\passwd",
    ],
)
def test_no_file_outside_static_over_a_real_socket(base_url: str, target: str) -> None:
    status, data = raw_get(base_url, target)
    assert status in (400, 404), (target, status)
    assert b"root:" not in data and b"create_app" not in data
    assert raw_get(base_url, "/static/app.css")[0] == 200


DO_NOT_TRACK = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"


def _events(url: str) -> list[tuple[str, str, str | None]]:
    """``(document, kind, source)`` of every stored event, in order."""
    rows = stored_events(url)
    assert len({r[3] for r in rows}) <= 1  # one anonymous reader: this browser
    return [(r[0], r[1], r[2]) for r in rows]


def shown(driver: WebDriver, doc_id: str) -> None:
    wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#doc .id").text == doc_id)


def _wait_for_events(url: str, n: int) -> list[tuple[str, str, str | None]]:
    import time

    deadline = time.monotonic() + 15
    while (found := _events(url)) and len(found) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return _events(url)


def test_the_page_logs_views_and_clicks(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    with serve(url) as base, chromium() as driver:
        open_page(driver, base, 1280, 900)
        line = driver.find_element(By.ID, "tracking").text
        assert "records which posts you open" in line and "anonymous id" in line
        first = driver.find_element(By.CSS_SELECTOR, "#docs a").get_attribute("data-id")
        ids = check_related_after_click(driver, first or "")
        driver.find_element(By.CSS_SELECTOR, "#related li.rel a").click()
        shown(driver, ids[0])
        found = _wait_for_events(url, 3)
        reader = driver.execute_script("return localStorage.getItem('textrec-reader')")
        key = driver.execute_script("return localStorage.getItem('textrec-reader-key')")
        assert found == [
            (first, "view", None),
            (ids[0], "click", "related"),
            (ids[0], "view", None),
        ]
        assert reader and reader.startswith("anon-")
        # The id was made by the server, which signed it: the key opens this reader's data.
        from textrec.serve.app import reader_key

        assert key == reader_key(Store(url).reader_secret(), reader)
        # "Forget what I read" erases the reader's events and the browser's id.
        driver.find_element(By.ID, "forget").click()
        wait(driver).until(lambda d: d.find_elements(By.ID, "forgotten"))
        assert "Forgotten: 3 event(s) deleted" in driver.find_element(By.ID, "forgotten").text
        assert driver.execute_script("return localStorage.getItem('textrec-reader')") is None
    assert _events(url) == []


def test_the_page_sends_nothing_when_asked_not_to_track(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    with serve(url) as base, chromium(do_not_track=True) as driver:
        open_page(driver, base, 1280, 900)
        assert "records nothing" in driver.find_element(By.ID, "tracking").text
        first = driver.find_element(By.CSS_SELECTOR, "#docs a").get_attribute("data-id")
        ids = check_related_after_click(driver, first or "")
        driver.find_element(By.CSS_SELECTOR, "#related li.rel a").click()
        shown(driver, ids[0])
        # A view of a third post, then a fetch of the page, give any event time to land.
        driver.get(f"{base}/#{first}")
        shown(driver, first or "")
        assert driver.execute_script("return localStorage.getItem('textrec-reader')") is None
    assert _events(url) == []


def test_a_malformed_hash_is_no_script_error(base_url: str) -> None:
    """ "#%E0%A4%A" made decodeURIComponent throw an uncaught URIError."""
    with chromium() as driver:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {
                "source": "window.__errors = [];"
                "addEventListener('error', (e) => window.__errors.push(String(e.message)));"
            },
        )
        driver.get(f"{base_url}/#%E0%A4%A")
        wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#docs a")) == 20)
        wait(driver).until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#doc"), "Could not load")
        )
        assert driver.execute_script("return window.__errors") == []
