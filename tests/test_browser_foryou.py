"""The page's reader lists in a real headless Chromium, against a real ``textrec serve``:
"For you" (the reader's own recommendations, with their sources) and "Readers also read"
beside the related posts. The Wikinews sample gets a fixed, hand-made click log first: eight
readers who each read the first six posts of the list and nothing else, and four who read the
last three of those and the two posts after them; an ALS model is trained on it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.helpers import copy_database, stored_events
from textrec import Recommender
from textrec.cli.main import main

from .live_server import serve
from .test_browser import _events, chromium, open_page, shown, wait

pytestmark = pytest.mark.slow  # a real browser

READERS = 8  # seeded readers of the first six posts
OTHERS = 4  # seeded readers of the fourth to eighth posts


class Seeded:
    def __init__(self, url: str, base: str, group: list[str], unread: str) -> None:
        self.url = url  # the database
        self.base = base  # the server
        self.group = group  # the posts the seeded readers read
        self.unread = unread  # a post nobody has read (until the test that opens it)


@pytest.fixture(scope="module")
def seeded(wikinews_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    url = copy_database(wikinews_db, tmp_path_factory.mktemp("foryou"))
    rec = Recommender(url)
    _, docs = rec.documents(offset=0, limit=1000)
    ids = [d.external_id for d in docs]
    group, unread = ids[:6], ids[-1]
    stored, rejected = rec.add_events(
        {"user": f"seed-{r}", "item": item, "kind": "view"}
        for r in range(READERS)
        for item in group
    )
    assert stored == READERS * len(group) and not rejected
    stored, rejected = rec.add_events(
        {"user": f"other-{r}", "item": item, "kind": "view"}
        for r in range(OTHERS)
        for item in ids[3:8]
    )
    assert stored == OTHERS * 5 and not rejected
    rec.store.close()
    assert main(["-q", "--db", url, "train", "--model", "als"]) == 0
    with serve(url) as base:
        yield Seeded(url, base, group, unread)


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def for_you(driver: WebDriver) -> list[str]:
    items = driver.find_elements(By.CSS_SELECTOR, "#foryou li.rec")
    return [li.get_attribute("data-id") or "" for li in items]


def basis(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "foryou").get_attribute("data-basis") or ""


def requested(driver: WebDriver) -> list[str]:
    """Every URL this page has fetched since it loaded."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    return names


def test_a_new_reader_sees_popular_posts_in_words(seeded: Seeded) -> None:
    with chromium() as driver:
        open_page(driver, seeded.base, 1280, 900)
        wait(driver).until(lambda d: basis(d) == "popular" and for_you(d))
        text = driver.find_element(By.ID, "foryou-basis").text
        assert text.startswith("Popular now") and "no reading history" in text
        # The most read posts: the seeded readers' six first (8 or 12 readers; the next two
        # have 4), each marked popular, with its readers.
        shown_ids = for_you(driver)
        assert set(shown_ids[:6]) == set(seeded.group)
        for li in driver.find_elements(By.CSS_SELECTOR, "#foryou li.rec")[:6]:
            assert li.get_attribute("data-sources") == "popular"
            assert li.find_element(By.CSS_SELECTOR, ".src").text == "popular"
            count = li.find_element(By.CSS_SELECTOR, ".readers-count").text
            assert count in (f"{READERS} readers", f"{READERS + OTHERS} readers")
        # The page asked with the reader id and key the server made for this browser.
        assert any("/readers" in u for u in requested(driver))


def test_a_reader_with_history_sees_their_list_change_as_they_read(
    seeded: Seeded, tmp_path: Path
) -> None:
    with chromium() as driver:
        open_page(driver, seeded.base, 1280, 900)
        wait(driver).until(lambda d: basis(d) == "popular")
        link = driver.find_element(By.CSS_SELECTOR, f'#docs a[data-id="{seeded.group[0]}"]')
        first_title = link.text.splitlines()[0]
        link.click()
        shown(driver, seeded.group[0])
        wait(driver).until(lambda d: basis(d) == "history" and for_you(d))
        assert driver.find_element(By.ID, "foryou-basis").text.startswith("Picked from the posts")
        listed = for_you(driver)
        assert seeded.group[0] not in listed  # read posts are left out
        # The list is the server's, for this reader, item by item with its sources.
        reader = driver.execute_script("return localStorage.getItem('textrec-reader')")
        key = driver.execute_script("return localStorage.getItem('textrec-reader-key')")
        answer = get_json(
            f"{seeded.base}/users/{reader}/recommendations?k=10", {"X-Reader-Key": key}
        )
        assert answer["basis"] == "history"
        assert listed == [r["id"] for r in answer["results"]]
        words = {
            "related": "similar to what you read",
            "readers": "read by the same readers",
            "als": "readers with your taste",
            "popular": "popular",
        }
        for li, r in zip(
            driver.find_elements(By.CSS_SELECTOR, "#foryou li.rec"), answer["results"], strict=True
        ):
            chips = li.find_elements(By.CSS_SELECTOR, ".src")
            assert [c.get_attribute("data-source") for c in chips] == r["sources"]
            assert [c.text for c in chips] == [words[s] for s in r["sources"]]
            n = r["readers"]
            count = "no readers yet" if n == 0 else "1 reader" if n == 1 else f"{n} readers"
            assert li.find_element(By.CSS_SELECTOR, ".readers-count").text == count
            # ALS names the posts of the reader's history behind it, by title.
            because = li.find_elements(By.CSS_SELECTOR, ".because")
            if r["because"]:
                assert r["because"] == [seeded.group[0]]
                assert because[0].text == f"Because you read “{first_title}”"
            else:
                assert not because
        # The other posts the seeded readers read come through the readers' signal.
        by_readers = [
            li.get_attribute("data-id")
            for li in driver.find_elements(By.CSS_SELECTOR, "#foryou li.rec")
            if "readers" in (li.get_attribute("data-sources") or "").split()
        ]
        assert set(seeded.group[1:]) <= set(by_readers)
        assert any(r["because"] for r in answer["results"])  # the trained model took part
        # Opening a post from the list logs a click from "for-you", and the post leaves it.
        chosen = listed[0]
        driver.find_element(By.CSS_SELECTOR, f'#foryou a[data-id="{chosen}"]').click()
        shown(driver, chosen)
        wait(driver).until(lambda d: for_you(d) and chosen not in for_you(d))
        assert seeded.group[0] not in for_you(driver)
        driver.save_screenshot(str(tmp_path / "for-you.png"))
        mine = [e for e in _events_of(seeded.url, reader)]
        assert (chosen, "click", "for-you") in mine and (chosen, "view", None) in mine


def _events_of(url: str, user: str) -> list[tuple[str, str, str | None]]:
    return [(d, kind, source) for d, kind, source, u in stored_events(url) if u == user]


def test_readers_also_read_beside_the_related_posts(seeded: Seeded, tmp_path: Path) -> None:
    with chromium() as driver:
        # A post nobody has read: the note, in plain words, and no list. (The page logs its
        # own view only after the lists are answered, so this reader is not counted.)
        open_page(driver, seeded.base, 1280, 900)
        driver.get(f"{seeded.base}/#{seeded.unread}")
        shown(driver, seeded.unread)
        wait(driver).until(
            lambda d: "Nobody has read this post yet" in d.find_element(By.ID, "readers-note").text
        )
        assert not driver.find_elements(By.CSS_SELECTOR, "#readers li")
        # A post with readers: the other posts they read, most read together first.
        target = seeded.group[1]
        # (Asked before this reader's own view of it, which joins its readers.)
        expected = get_json(f"{seeded.base}/documents/{target}/similar?mode=readers&k=5")
        driver.get(f"{seeded.base}/#{target}")
        shown(driver, target)
        wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#readers li.rel")) == 5)
        ids = [
            li.get_attribute("data-id")
            for li in driver.find_elements(By.CSS_SELECTOR, "#readers li.rel")
        ]
        assert ids == [m["id"] for m in expected["results"]]
        assert set(ids) == set(seeded.group) - {target}
        scores = [
            float(s.text.split()[-1])
            for s in driver.find_elements(By.CSS_SELECTOR, "#readers .score")
        ]
        assert scores == [round(m["score"], 3) for m in expected["results"]]
        counts = [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#readers .meta")]
        wanted = [f"{m['readers']} readers" for m in expected["results"]]
        assert all(w in c for c, w in zip(counts, wanted, strict=True))
        assert scores[0] > 0 and scores == sorted(scores, reverse=True)
        # Side by side with the related posts at desktop width, below them at phone width.
        rel = driver.find_element(By.CSS_SELECTOR, ".related").rect
        also = driver.find_element(By.CSS_SELECTOR, ".readers").rect
        assert also["x"] > rel["x"] and abs(also["y"] - rel["y"]) < 2
        # A click on it is logged with the source "readers".
        reader = driver.execute_script("return localStorage.getItem('textrec-reader')")
        driver.find_element(By.CSS_SELECTOR, "#readers li.rel a").click()
        shown(driver, ids[0] or "")
        wait(driver, 15).until(
            lambda d: (ids[0], "click", "readers") in _events_of(seeded.url, reader)
        )
        driver.set_window_size(390, 844)
        wait(driver).until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".readers").rect["y"]
                > d.find_element(By.CSS_SELECTOR, ".related").rect["y"]
            )
        )
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        driver.set_window_size(390, 3000)
        driver.save_screenshot(str(tmp_path / "readers-phone.png"))


def test_do_not_track_asks_for_no_reader_list(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    with serve(url) as base, chromium(do_not_track=True) as driver:
        open_page(driver, base, 1280, 900)
        text = driver.find_element(By.ID, "foryou-basis").text
        assert "asks not to be tracked" in text and "no “For you” list" in text
        first = driver.find_element(By.CSS_SELECTOR, "#docs a").get_attribute("data-id") or ""
        driver.find_element(By.CSS_SELECTOR, "#docs a").click()
        shown(driver, first)
        # The readers' list of the post is asked for (it needs no reader id) ...
        wait(driver).until(
            lambda d: "Nobody has read this post yet" in d.find_element(By.ID, "readers-note").text
        )
        urls = requested(driver)
        assert any("mode=readers" in u for u in urls)
        # ... but nothing about this reader: no id made, no list of theirs, no events.
        assert not [u for u in urls if "/users/" in u or "/readers" in u or "/events" in u]
        assert not driver.find_elements(By.CSS_SELECTOR, "#foryou li")
        assert driver.execute_script("return localStorage.getItem('textrec-reader')") is None
    assert _events(url) == []
