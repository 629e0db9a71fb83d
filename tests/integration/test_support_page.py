"""The support page in headless Chromium, against the real broker after a short worker run.

Debian's ``chromium`` and ``chromium-driver`` drive it (``make browser-deps`` installs
them, and ``make test`` depends on that target). The page is compared with the JSON
export of the same subject; the screenshot goes to ``docs/support-page.png`` (README).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from streams.config import PROJECT_ROOT, Settings, settings_env
from streams.transparency import render
from tests.integration import kit

pytestmark = pytest.mark.kafka

TOKEN = "browser-test-support-token-0001"
ADMIN = "browser-test-admin-token-000002"
SUBJECT = "cust-browser-1"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = PROJECT_ROOT / "docs" / "support-page.png"
#: Bounded waits (no timed asserts): how long the worker, the page and the browser may take.
WAIT_S = 90


def _export(s: Settings) -> dict:
    return json.loads(render(s, SUBJECT, "json"))


def _cli(s: Settings, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
    env.update(settings_env(s))
    r = subprocess.run([sys.executable, "-m", "streams.cli", "report", SUBJECT, *args], env=env,
                       capture_output=True, text=True, timeout=WAIT_S, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _wait_decided(s: Settings, inputs: int) -> dict:
    """Until every engine has a decision for each of the subject's ``inputs`` events."""
    deadline = time.monotonic() + WAIT_S
    doc: dict = {}
    while time.monotonic() < deadline:
        doc = _export(s)
        if all(r["sent"] + sum(r["dropped"].values()) >= inputs for r in doc["recipients"]):
            return doc
        time.sleep(0.5)
    raise TimeoutError(f"not all decisions after {WAIT_S}s: {doc.get('recipients')}")


def _serve(s: Settings, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
    env.update(settings_env(s))
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve"], env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pfilter serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{s.support_port}/login", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("pfilter serve did not answer")


def _browser(tmp: Path):  # noqa: ANN202
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make browser-deps` (as root)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1500",
                 f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def test_support_page_in_a_browser(kafka_settings: Settings, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    s = kafka_settings.model_copy(update={"support_token": TOKEN, "support_admin_token": ADMIN,
                                          "support_port": kit.free_port()})
    kit.setup_topics(s)
    p = kit.producer(s)
    now = int(time.time() * 1000)
    g = {"status": "granted", "granted_at": now - 2 * kit.DAY, "expires_at": now + 300 * kit.DAY}
    no = {"status": "denied", "granted_at": None, "expires_at": None}
    kit.send(p, s.topic_consent, SUBJECT, kit.consent(
        SUBJECT, now - kit.DAY,
        purposes={"personalization": g, "third_party_sharing": dict(g), "marketing_email": no},
        categories={"browsing": True, "purchase_history": True, "location": True, "contact": False,
                    "connection_data": False, "payment": False}))
    for i in range(3):
        kit.send(p, s.topic_clickstream, SUBJECT, kit.page_view(f"e-{i}", SUBJECT, now - (3 - i) * kit.HOUR))
    kit.send(p, s.topic_purchases, SUBJECT, kit.purchase("e-buy", SUBJECT, now - 1000))

    worker = kit.start_worker(s, tmp_path)
    server = None
    driver = None
    try:
        expected = _wait_decided(s, 4)
        server = _serve(s, tmp_path / "serve.log")
        base = f"http://127.0.0.1:{s.support_port}"

        # without the token: 401 and nothing of the subject, on every page
        for path in (f"/subject?id={SUBJECT}", f"/subject/export.json?id={SUBJECT}", "/", "/api/overview"):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code == 401, path
            assert SUBJECT not in r.text and "partner_ads" not in r.text and "browsing" not in r.text, path

        driver = _browser(tmp_path)
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(f"{base}/subject?id={SUBJECT}")
        assert driver.find_elements(By.ID, "login") and SUBJECT not in driver.page_source
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(ec.presence_of_element_located((By.ID, "lookup")))
        # the live overview reads the worker's /metrics through the serve app
        wait.until(lambda d: d.find_element(By.ID, "ov-in").text.isdigit()
                   and int(d.find_element(By.ID, "ov-in").text) >= 4)
        driver.find_element(By.ID, "subject-id").send_keys(SUBJECT)
        driver.find_element(By.CSS_SELECTOR, "#lookup button").click()
        wait.until(ec.presence_of_element_located((By.ID, "recipients")))

        # the page agrees with the JSON export of the same subject
        export = httpx.get(f"{base}/subject/export.json?id={SUBJECT}",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        assert export["recipients"] == expected["recipients"]
        assert json.loads(_cli(s, "--format", "json"))["recipients"] == export["recipients"]
        assert json.loads(_cli(s, "--json"))["recipients"] == export["recipients"]
        de = _cli(s, "--format", "text", "--lang", "de")
        assert "wurden Ihr Surfverhalten und Ihre Kaufhistorie von unserer Angebots-Engine für " \
               "Personalisierung verwendet (4 Ereignisse" in de
        rows = driver.find_elements(By.CSS_SELECTOR, "#recipients tbody tr")
        assert [r.get_attribute("data-engine") for r in rows] == [e["engine"] for e in export["recipients"]]
        for row, want in zip(rows, export["recipients"], strict=True):
            assert int(row.find_element(By.CSS_SELECTOR, ".sent").text) == want["sent"]
            cats = {t.get_attribute("data-category"): int(t.get_attribute("data-count"))
                    for t in row.find_elements(By.CSS_SELECTOR, ".categories .tag")}
            assert cats == want["categories"]
            drops = {t.get_attribute("data-reason"): int(t.get_attribute("data-count"))
                     for t in row.find_elements(By.CSS_SELECTOR, ".dropped .tag")}
            assert drops == want["dropped"]
        by = {e["engine"]: e for e in export["recipients"]}
        assert by["offers"]["sent"] == 4 and by["email"]["dropped"] == {"purpose_denied": 4}
        assert by["partner_ads"]["categories"].get("location") == 4
        summary = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#summary p")]
        text = render(s, SUBJECT, "text", "en")
        assert summary == [" ".join(p.split("\n")) for p in text.strip().split("\n\n")]
        assert "your browsing and your purchase history were used by our offers engine" in text
        assert driver.find_elements(By.CSS_SELECTOR, "#consent tbody tr[data-kind='record']")
        assert driver.find_element(By.ID, "export").get_attribute("href").endswith(
            f"/subject/export.json?id={SUBJECT}")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.set_window_size(1280, driver.execute_script("return document.body.scrollHeight") + 40)
        assert driver.save_screenshot(str(SCREENSHOT))

        # erase behind the confirmation and the admin token: a tombstone the worker acts on
        form = driver.find_element(By.ID, "erase")
        form.find_element(By.NAME, "confirm").send_keys(SUBJECT)
        form.find_element(By.NAME, "admin_token").send_keys(ADMIN)
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait.until(ec.presence_of_element_located((By.ID, "erased")))
        # the full cascade (streams.erase), not only the consent tombstone: the data key too
        assert "data key was tombstoned" in driver.find_element(By.ID, "erased").text
        assert driver.find_elements(By.ID, "erase-confirmed"), "the worker did not confirm the erasure"
        deadline = time.monotonic() + WAIT_S
        doc = _export(s)
        while len(doc["erasure"]["receipts"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            doc = _export(s)
        assert doc["consent"]["erased"] is True and doc["consent"]["current"] is None
        # one receipt per engine, the pseudonymized engine's found through its pseudonym's partition
        assert sorted((r["engine"], r["pseudonymized"]) for r in doc["erasure"]["receipts"]) == [
            ("email", False), ("offers", False), ("partner_ads", True)]
        driver.get(f"{base}/subject?id={SUBJECT}")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#erasure tbody tr")) == 3
        assert "You asked us to forget you on" in driver.find_element(By.ID, "summary").text
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.terminate()
            server.wait(30)
        worker.stop()
