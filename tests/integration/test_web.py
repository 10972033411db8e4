"""``mailhelp serve``: the survey's web links, in a real headless Chromium and over HTTP.

The site runs on loopback against a database where a ticket was resolved and its
survey mailed (Pipeline + run_due, as the daemon does); the links come from that
mail. Opening a link must record nothing, since mail scanners open every link.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailhelp.app import App
from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox, Survey, Ticket, TicketEvent
from mailhelp.db.session import Database
from mailhelp.desk.lifecycle import run_due
from mailhelp.desk.surveys import sign
from mailhelp.service.pipeline import Arrival, Pipeline
from mailhelp.web import site as web
from tests.helpers import desk_config as base_config
from tests.helpers import mail_of

pytestmark = pytest.mark.integration

IN_CI = os.environ.get("CI") == "true"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SECRET = "correct horse battery staple"
SUBJECT = "Projector <b>dead</b> & room 12"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--no-proxy-server")
# The test talks to loopback only, whatever proxy the environment names.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Site:
    """The running survey site, its database, and the links the survey mail carried."""

    origin: str
    db: Database
    clock: dict
    links: dict[int, str]

    def path(self, rating: int) -> str:
        return self.links[rating].removeprefix(self.origin)

    def state(self) -> tuple:
        """Everything an answer would change; equal before and after means nothing recorded."""
        with self.db.sessions() as session:
            survey = session.scalar(select(Survey))
            ticket = session.get(Ticket, survey.ticket_id)
            return (survey.rating, survey.comment, survey.answered_at, survey.answered_via,
                    ticket.status, ticket.updated_at,
                    session.scalar(select(func.count()).select_from(TicketEvent)),
                    session.scalar(select(func.count()).select_from(Outbox)))

    def survey(self) -> Survey:
        with self.db.sessions() as session:
            return session.scalar(select(Survey))

    def thanks(self) -> list[email.message.EmailMessage]:
        """The thank-you mails in the outbox."""
        with self.db.sessions() as session:
            rows = session.scalars(select(Outbox).where(Outbox.kind == "status"))
            mails = [email.message_from_bytes(mail_of(row), policy=email.policy.default)
                     for row in rows]
        return [m for m in mails if "Thank you for your rating" in m["Subject"]]


def desk_config(tmp_path: Path, database_url: str, origin: str, secret: str = SECRET):
    return base_config(tmp_path, database_url, f"""
        [survey]
        base_url = "{origin}/survey"
        secret = "{secret}"
        """)


def resolved_and_surveyed(config, db: Database, clock: dict) -> dict[int, str]:
    """A teacher's request, a staff #resolve, the survey an hour later: its web links."""
    pipeline = Pipeline(config, db, lambda: clock["now"])
    for raw in (f"From: Jane Teacher <teacher1@school.test>\nTo: help@school.test\n"
                f"Subject: {SUBJECT}\nMessage-ID: <r1@x>\n\nIt does not turn on.\n",
                "From: Sam <tech1@school.test>\nTo: help@school.test\nSubject: Re: [#1] x\n"
                "Message-ID: <s1@x>\n\n#resolve\nThe lamp was loose; it works now.\n"):
        [result] = pipeline.accept([Arrival(raw.encode(), "t")])
        assert not result.failed, result.error
    clock["now"] = T0 + timedelta(hours=2)
    assert run_due(db, config, lambda: clock["now"]) == 1
    with db.sessions() as session:
        raw = mail_of(session.scalar(select(Outbox).where(Outbox.kind == "survey")))
    text = email.message_from_bytes(raw, policy=email.policy.default).get_body(
        ("plain",)).get_content().replace("\r\n", "\n")
    return {int(n): url for n, url in re.findall(r"^\s+(\d) - \w+: (http\S+)$", text, re.M)}


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = desk_config(tmp_path, database_url, origin)
        db = Database(database_url)
        upgrade(db)
        clock = {"now": T0}
        links = resolved_and_surveyed(config, db, clock)
        assert sorted(links) == [1, 2, 3, 4, 5]
        clock["now"] = T0 + timedelta(hours=3)
        server = web.server(App(config, db, lambda: clock["now"]))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline and thread.is_alive(), "no site started"
                time.sleep(0.02)
            yield Site(origin, db, clock, links)
        finally:
            server.should_exit = True
            thread.join(10)
            db.dispose()


def fetch(url: str, method: str = "GET", form: dict | None = None,
          headers: dict | None = None, body: bytes | None = None
          ) -> tuple[int, str, email.message.Message]:
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with HTTP.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(), error.headers


# In a real browser ------------------------------------------------------------------

@pytest.fixture
def browser(tmp_path: Path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = (f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver "
                  "(the browser test of the survey site needs them)")
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        from selenium import webdriver
    except ImportError:
        if IN_CI:
            pytest.fail("selenium missing: pip install -e '.[test]'", pytrace=False)
        pytest.skip("selenium missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
                 "--window-size=390,844"):
        options.add_argument(flag)
    # Both paths given: Selenium Manager is never asked to find or download anything.
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)),
                              options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def heading(browser, expected: str) -> str:
    """The page's h1 once it reads ``expected`` (a form post loads the next page later)."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def read(driver) -> str:
        return driver.find_element(By.TAG_NAME, "h1").text

    # While the next page loads, Chromium may report the old h1 as stale, or as a node
    # that "does not belong to the document" (a plain WebDriverException): poll again.
    wait = WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,
                                                          WebDriverException))
    with contextlib.suppress(TimeoutException):  # the assertion shows what it says instead
        wait.until(lambda driver: read(driver) == expected)
    return read(browser)


def test_a_teacher_answers_in_the_browser(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By

    untouched = site.state()
    browser.get(site.links[4])
    assert heading(browser, "How did we do?") == "How did we do?"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "meta[name=viewport]").get_attribute(
        "content") == "width=device-width, initial-scale=1"
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "#1" in page and SUBJECT in page  # the subject's markup shown as text
    radios = browser.find_elements(By.CSS_SELECTOR, "input[type=radio][name=rating]")
    assert [(r.get_attribute("value"), r.is_selected()) for r in radios] == [
        ("5", False), ("4", True), ("3", False), ("2", False), ("1", False)]
    assert browser.find_element(By.CSS_SELECTOR, "label[for=comment]").text.startswith(
        "Comment")
    assert site.state() == untouched, "opening the link recorded something"

    browser.find_element(By.CSS_SELECTOR, "input[name=rating][value='5']").click()
    browser.find_element(By.ID, "comment").send_keys("Fixed before my next class, thanks!")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert heading(browser, "Thank you!") == "Thank you!"
    assert "5 – Excellent" in browser.find_element(By.TAG_NAME, "body").text
    survey = site.survey()
    assert (survey.rating, survey.comment, survey.answered_via) == (
        5, "Fixed before my next class, thanks!", "web")
    assert site.state()[4] == "resolved"  # the ticket's status never changes
    assert len(site.thanks()) == 1

    answered = site.state()
    browser.get(site.links[4].replace(".4.", ".1."))  # a rating changed by hand
    assert heading(browser, "This link is not valid") == "This link is not valid"
    assert "survey mail" in browser.find_element(By.TAG_NAME, "main").text
    # Another page (an opaque data: origin here) posting to the link is refused.
    browser.get(f"data:text/html,<form method=post action='{site.links[1]}'>"
                "<input name=rating value=1><button>Go</button></form>")
    browser.find_element(By.TAG_NAME, "button").click()
    assert heading(browser, "Your answer was not recorded") == "Your answer was not recorded"
    site.clock["now"] = T0 + timedelta(days=31)  # past [survey] link_lifetime
    browser.get(site.links[3])
    assert heading(browser, "This link has expired") == "This link has expired"
    assert "reply to the survey mail" in browser.find_element(By.TAG_NAME, "main").text
    assert site.state() == answered


# Over plain HTTP --------------------------------------------------------------------

def test_health_and_robots(site: Site) -> None:
    assert fetch(f"{site.origin}/healthz")[:2] == (200, "ok\n")
    assert fetch(f"{site.origin}/survey/healthz")[:2] == (200, "ok\n")
    status, body, _ = fetch(f"{site.origin}/robots.txt")
    assert status == 200 and "Disallow: /" in body


def test_opening_a_link_records_nothing(site: Site) -> None:
    untouched = site.state()
    for rating, link in site.links.items():
        status, body, headers = fetch(link)
        assert status == 200
        assert re.search(rf'value="{rating}" required checked', body)
        assert body.count(" checked") == 1
        assert fetch(link, "HEAD")[:2] == (200, "")
    assert '<html lang="en">' in body
    assert "Projector &lt;b&gt;dead&lt;/b&gt; &amp; room 12" in body  # autoescaped
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert fetch(site.origin + "/" + site.path(2).removeprefix("/survey/"))[0] == 200
    assert site.state() == untouched


def test_sending_the_form_records_the_answer(site: Site) -> None:
    status, body, _ = fetch(site.links[4], "POST", {"rating": "2", "comment": "Took a week."},
                            {"Origin": site.origin})
    assert status == 200 and "Thank you!" in body and "2 – Poor" in body
    survey = site.survey()
    assert (survey.rating, survey.comment, survey.answered_via) == (2, "Took a week.", "web")
    assert survey.answered_at == T0 + timedelta(hours=3)
    with site.db.sessions() as session:
        [answer] = session.scalars(select(TicketEvent).where(
            TicketEvent.action == "survey_answer"))
    assert (answer.actor, answer.detail) == ("teacher1@school.test", "rating 2 (web)")
    assert site.state()[4] == "resolved" and len(site.thanks()) == 1
    # The same form again (a double click, a reload) sends no second thank-you.
    fetch(site.links[4], "POST", {"rating": "2", "comment": "Took a week."})
    assert len(site.thanks()) == 1
    # The latest answer counts; a same-origin Referer is fine.
    status, _, _ = fetch(site.links[4], "POST", {"rating": "5", "comment": ""},
                         {"Referer": site.links[4]})
    assert status == 200 and (site.survey().rating, site.survey().comment) == (5, "")
    assert len(site.thanks()) == 2 and site.state()[4] == "resolved"


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},
    {"Referer": "https://evil.example/page"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_a_post_from_another_site_is_refused(site: Site, headers: dict) -> None:
    untouched = site.state()
    status, body, _ = fetch(site.links[1], "POST", {"rating": "1"}, headers)
    assert status == 403 and "Your answer was not recorded" in body
    assert site.state() == untouched


def test_bad_links_are_refused_with_a_clear_page(site: Site) -> None:
    untouched = site.state()
    token = site.survey().token
    later = T0 + timedelta(days=5)
    cases = {
        site.links[4].replace(".4.", ".5."): (400, "This link is not valid"),
        f"{site.origin}/survey/garbage": (400, "This link is not valid"),
        f"{site.origin}/survey/{token}.4.99999999999999999999.AAAA": (400, "not valid"),
        f"{site.origin}/survey/{sign('another secret', token, 4, later)}": (400, "not valid"),
        f"{site.origin}/survey/{sign(SECRET, token, 4, T0)}": (410, "This link has expired"),
        f"{site.origin}/survey/{sign(SECRET, 'a' * 26, 4, later)}": (404, "could not find"),
        f"{site.origin}/survey/": (404, "Page not found"),
        f"{site.origin}/survey/a/b": (404, "Page not found"),
    }
    for url, (status, text) in cases.items():
        for method, form in (("GET", None), ("POST", {"rating": "3"})):
            got, body, _ = fetch(url, method, form)
            assert (got, text in body) == (status, True), (method, url)
            assert "survey mail" in body or "help desk" in body
    assert fetch(site.links[4], "PUT")[0] == 405
    assert site.state() == untouched


def test_a_bad_form_shows_the_form_again(site: Site) -> None:
    untouched = site.state()
    for form, error in (({"rating": "7"}, "Please choose a rating"),
                        ({"rating": ""}, "Please choose a rating"),
                        ({"comment": "no rating"}, "Please choose a rating"),
                        ({"rating": "4", "comment": "x" * 5001}, "Please shorten")):
        status, body, _ = fetch(site.links[4], "POST", form)
        assert status == 400 and error in body and "<form" in body
    assert fetch(site.links[4], "POST", body=b"comment=" + b"x" * 70_000)[0] == 413
    assert site.state() == untouched


def test_the_serve_command(tmp_path: Path, database_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    db = Database(database_url)
    upgrade(db)
    db.dispose()
    path = tmp_path / "mailhelp.toml"
    toml = (f'[helpdesk]\naddress = "help@school.test"\n[database]\nurl = "{database_url}"\n'
            f'[survey]\nbase_url = "http://127.0.0.1:{port}/survey"\n')
    path.write_text(toml)
    command = [sys.executable, "-m", "mailhelp", "--config", str(path), "serve",
               "--listen", f"127.0.0.1:{port}"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "survey.secret" in refused.stderr
    path.write_text(toml + f'secret = "{SECRET}"\n')
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert fetch(f"http://127.0.0.1:{port}/survey/healthz")[0] == 200
                break
            except urllib.error.URLError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
