"""The dashboard in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
sign in with a token, see the team's users only (worsening first, HTML in ids shown as text),
open a trajectory chart, acknowledge an alert; on a ward of synthetic v2 scores, see the interval
band, the nine items and the quoted evidence (as text), how far beyond noise an alert is, and save
a screenshot.

Needs `scripts/install-browser.sh`; PHQ_UPDATE_SCREENSHOT=1 also writes docs/dashboard.png."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from test_care_support import add_evidence, add_scores, db_env

from care import store
from phq.db import engine as make_engine
from phq.tables import care_audit_log, symptom_change_events

pytestmark = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromedriver: run scripts/install-browser.sh",
)
REPO = Path(__file__).resolve().parent.parent
XSS_ID = '<img src=x onerror="window.__xss=1">'
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1400,1050"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ward(db_url) -> dict:
    """A team whose users worsen, improve, stay level and carry HTML in their id; plus another team's user."""
    start = datetime.now(timezone.utc) - timedelta(days=40)
    every = timedelta(days=4, hours=3)
    with make_engine(db_url).begin() as conn:
        team = store.create_team(conn, "dash-ward")
        other = store.create_team(conn, "dash-other")
        users = {"dash-rising": [4, 6, 5, 8, 9, 12, 11, 15, 18], "dash-improving": [17, 15, 12, 9, 7],
                 "dash-steady": [6, 7, 6, 7], XSS_ID: [3, 4]}
        store.assign(conn, team, list(users))
        for user, scores in users.items():
            add_scores(conn, user, scores, start=start, every=every)
        store.assign(conn, other, ["dash-elsewhere"])
        add_scores(conn, "dash-elsewhere", [2, 22], start=start)
        token = store.create_token(conn, team, "Dr Rivera", None)[1]
    return {"token": token, "users": set(users), "rising": users["dash-rising"]}


# Synthetic excerpts, written for this test: the words behind each item of one user's scores.
SYNTHETIC_QUOTES = {
    1: ["didn't even open the guitar case this week, used to play every night"],
    2: ["everything feels heavy and kind of pointless lately", "just flat. not sad exactly, flat"],
    3: ["up till 4 again, then couldn't get out of bed till noon"],
    4: ["so tired by lunch I sat in the car for an hour"],
    6: ["I keep letting everyone down at work"],
    7: ["read the same email five times and it still didn't go in"],
}
XSS_QUOTE = '<img src=x onerror="window.__xss=2">and then'


@pytest.fixture(scope="module")
def synthetic_ward(db_url) -> dict:
    """A team of synthetic users scored by a calibrated item model: items, intervals, evidence, noise bounds."""
    start = datetime.now(timezone.utc) - timedelta(days=30)
    every = timedelta(days=3, hours=5)
    users = {"synthetic-0142": [5, 6, 7, 13, 12, 16.5], "synthetic-0217": [14, 12.5, 9, 8.5],
             "synthetic-0388": [8, 8.5, 7.5, 9], "synthetic-0451": [3, 4, 3.5]}
    with make_engine(db_url).begin() as conn:
        team = store.create_team(conn, "ward-7 (synthetic data)")
        store.assign(conn, team, list(users))
        scores = {}
        for user, series in users.items():
            scores[user] = add_scores(conn, user, series, start=start, every=every, model="cold-start-items-v1",
                                      half_width=2.6, noise_bound=3.9)[0]
        focus = scores["synthetic-0142"]
        add_evidence(conn, focus[-1], SYNTHETIC_QUOTES, at=start + 5 * every)
        add_evidence(conn, focus[-2], {2: [XSS_QUOTE]}, at=start + 4 * every)
        token = store.create_token(conn, team, "Dr Rivera", None)[1]
    return {"token": token, "focus": "synthetic-0142", "scores": focus, "n": len(users["synthetic-0142"])}


@pytest.fixture(scope="module")
def api_url(db_url) -> str:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "phq.cli", "api", "--port", str(port)],
                            env=db_env(db_url, PHQ_LOG_LEVEL="WARNING"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"phq api did not start: {proc.stderr.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_window_size(1400, 1050)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def test_a_clinician_signs_in_reviews_a_trajectory_and_acknowledges_an_alert(browser, api_url, ward, db_url):
    from selenium.webdriver.common.by import By

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    browser.get(api_url + "/")
    browser.find_element(By.ID, "token-input").send_keys("phq_wrong")
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, lambda d: "not accepted" in d.find_element(By.ID, "sign-in-error").text)

    browser.find_element(By.ID, "token-input").send_keys(ward["token"])
    browser.find_element(By.ID, "sign-in").click()
    rows = wait_for(browser, lambda d: css("#users tbody tr") if len(css("#users tbody tr")) == 4 else None)
    shown = [r.get_attribute("data-user") for r in rows]
    assert set(shown) == ward["users"], "the team's users, and only them"
    assert shown[0] == "dash-rising", "worsening first"
    assert "Dr Rivera" in browser.find_element(By.ID, "who-text").text
    assert browser.execute_script("return sessionStorage.getItem('phq.token')") == ward["token"]

    xss_row = next(r for r in rows if r.get_attribute("data-user") == XSS_ID)
    assert XSS_ID in xss_row.text, "HTML in a user id is shown as text"
    assert not css("img") and browser.execute_script("return window.__xss") is None

    rows[0].click()
    wait_for(browser, lambda d: len(css("#chart circle.point")) == len(ward["rising"]))
    assert css("#chart line.threshold") and len(css("#chart rect.bg")) == 5
    assert css("#chart polygon.event.worsening"), "change events are marked on the chart"

    open_before = len(css("#alerts tbody tr"))
    button = css("#alerts tbody tr[data-user='dash-rising'] button.ack")[0]
    alert_id = int(button.get_attribute("data-alert-id"))
    button.click()
    wait_for(browser, lambda d: "acknowledged" in d.find_element(By.ID, "alerts-message").text)
    wait_for(browser, lambda d: len(css("#alerts tbody tr")) == open_before - 1)
    with make_engine(db_url).connect() as conn:
        acked_by = conn.execute(select(symptom_change_events.c.acknowledged_by)
                                .where(symptom_change_events.c.id == alert_id)).scalar()
    assert acked_by == "Dr Rivera"


def sign_in(browser, api_url, token):
    from selenium.webdriver.common.by import By

    browser.execute_script("sessionStorage.clear()")
    browser.get(api_url + "/")
    browser.find_element(By.ID, "token-input").send_keys(token)
    browser.find_element(By.ID, "sign-in").click()


def test_a_score_shows_its_items_quoted_evidence_interval_band_and_noise(browser, api_url, synthetic_ward, db_url,
                                                                       tmp_path):
    from selenium.webdriver.common.by import By

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    sign_in(browser, api_url, synthetic_ward["token"])
    rows = wait_for(browser, lambda d: css("#users tbody tr") if len(css("#users tbody tr")) == 4 else None)
    assert rows[0].get_attribute("data-user") == synthetic_ward["focus"], "worsening first"
    rows[0].click()

    wait_for(browser, lambda d: len(css("#chart circle.point")) == synthetic_ward["n"])
    assert css("#chart polygon.interval"), "the interval band is drawn"
    latest = str(synthetic_ward["scores"][-1])
    wait_for(browser, lambda d: len(css("#items rect.bar")) == 9)
    assert css("#chart circle.point.selected")[0].get_attribute("data-score-id") == latest
    quotes = wait_for(browser, lambda d: css("#evidence blockquote") or None)
    shown = {(int(q.get_attribute("data-item")), q.find_element(By.TAG_NAME, "p").text) for q in quotes}
    assert shown == {(item, text) for item, texts in SYNTHETIC_QUOTES.items() for text in texts}
    widths = [float(b.get_attribute("width")) for b in css("#items rect.bar")]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1], "bars scale with the item scores"
    assert "interval" in browser.find_element(By.ID, "score-title").text

    noise = [c.text for c in css("#alerts td.noise")]
    assert noise and all("beyond noise (±3.9)" in t for t in noise), "alerts say how far beyond noise they are"
    assert "2.1 beyond noise" in noise[0] or "2.1 beyond noise" in " ".join(noise), "|delta| 6 - bound 3.9"

    shot = tmp_path / "dashboard.png"
    browser.set_window_size(1400, 1480)  # the whole page: chart, items, evidence and alerts
    browser.save_screenshot(str(shot))
    browser.set_window_size(1400, 1050)
    assert shot.stat().st_size > 10_000
    if os.environ.get("PHQ_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, REPO / "docs" / "dashboard.png")

    earlier = next(p for p in css("#chart circle.point")
                   if p.get_attribute("data-score-id") == str(synthetic_ward["scores"][-2]))
    earlier.click()
    wait_for(browser, lambda d: len(css("#evidence blockquote")) == 1)
    assert css("#evidence blockquote p")[0].text == XSS_QUOTE, "an excerpt is shown as the text it is"
    assert not css("#evidence img") and browser.execute_script("return window.__xss") is None
    with make_engine(db_url).connect() as conn:
        reads = conn.execute(select(care_audit_log.c.score_id).where(
            care_audit_log.c.action == "read_evidence", care_audit_log.c.user_id == synthetic_ward["focus"]))
        assert {str(r) for (r,) in reads} >= {latest, str(synthetic_ward["scores"][-2])}, "each read audited"


def test_the_page_is_public_but_shows_nothing_without_a_token(browser, api_url):
    from selenium.webdriver.common.by import By

    browser.execute_script("sessionStorage.clear()")
    browser.get(api_url + "/")
    assert browser.find_element(By.ID, "sign-in-panel").is_displayed()
    assert not browser.find_element(By.ID, "dashboard").is_displayed()
