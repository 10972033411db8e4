#!/usr/bin/env python3
"""Render the HTML part of every mail template and every page of the survey site, and
screenshot each in headless Chromium at a phone size and a desktop size, to look at.

    python scripts/render_templates.py [OUT_DIR]        (default /tmp/mailhelp-screens)

OUT_DIR gets ``html/NAME.html`` and ``NAME-phone.png`` (390x844, as a phone shows it:
mobile viewport rules apply) and ``NAME-desktop.png`` (1280x900); a page longer than
the screen is captured whole. The screenshots need Debian's chromium and
chromium-driver and selenium (the test extra); ``--html-only`` needs neither.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from mailhelp import check
from mailhelp import config as config_module
from mailhelp.delivery import templating
from mailhelp.desk import surveys
from mailhelp.web import site as web

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--no-proxy-server", "--hide-scrollbars")
SIZES = {"phone": (390, 844, True), "desktop": (1280, 900, False)}
TALLEST = 6000

CONFIG = config_module.loads("""
    [helpdesk]
    name = "Springfield SD Help Desk"
    address = "help@school.test"
    [survey]
    base_url = "https://help.school.test/survey"
    secret = "not a secret"
    """)

TEACHER_TEXT = """Hello,

the projector in room 12 does not turn on since this morning. The lamp light blinks
orange three times, then nothing. I have a class with it at 10:15 and another after lunch.

I already unplugged it for a minute and tried the other HDMI cable.

Thanks,
Jane"""


def mail_sample() -> dict:
    """The variables ``mailhelp check`` renders every template with, so both stay in step."""
    seen: list[dict] = []
    with mock.patch.object(templating, "render",
                           lambda kind, variables, *args, **kwargs: seen.append(variables)):
        check._templates(CONFIG)
    return seen[0]


def mails() -> Iterator[tuple[str, str, dict]]:
    """(file name, template kind, variables): each kind, and the variants that look different."""
    sample = mail_sample()
    token = sample["token"]
    expires = datetime.now(UTC) + timedelta(days=30)
    sample = {**sample,
              "ratings": surveys.mailto_links(CONFIG.helpdesk.address, sample["tag"], token),
              "web_ratings": surveys.web_links(CONFIG.survey.base_url, "x", token, expires),
              "message": {**sample["message"], "text": TEACHER_TEXT}}
    staff_answer = ("Hi Jane,\n\nthe lamp was loose after the summer cleaning; it is fixed "
                    "now.\nIf it blinks again, please send me a photo of the lights.\n\nSam")
    variants: dict[str, list[tuple[str, dict]]] = {
        "ack": [("", {}), ("-plain", {"linked_tag": "",
                                       "message": {**sample["message"], "dropped": []}})],
        "notification": [("", {}), ("-reply", {"event": "reply", "ticket": {
            **sample["ticket"], "status": "open"}})],
        "relay": [("", {"message": {**sample["message"], "text": staff_answer}})],
        "resolved": [("", {}), ("-automatic", {"automatic": True})],
        "survey": [("", {}), ("-mail-only", {"web_ratings": []})],
        "survey_thanks": [("", {}), ("-no-comment", {"comment": ""})],
    }
    for kind in templating.KINDS:
        for suffix, extra in variants.get(kind, [("", {})]):
            yield f"mail-{kind}{suffix}", kind, {**sample, **extra}


def pages() -> Iterator[tuple[str, str]]:
    """(file name, HTML) of every page the survey site shows."""
    view = {"id": 42, "tag": "#42", "subject": "Projector in room 12 does not turn on",
            "rating": None, "label": "", "comment": "", "answered": False}
    answered = {**view, "rating": 3, "label": "Okay", "answered": True,
                "comment": "It works, but it took two days."}
    yield "web-survey", web.form_page(CONFIG, view, 4, "")
    yield "web-survey-again", web.form_page(CONFIG, answered, 5, answered["comment"])
    yield "web-survey-error", web.form_page(
        CONFIG, view, 4, "x" * 60, "Please shorten your comment to at most 5,000 characters.")
    thanks = {**answered, "rating": 5, "label": "Excellent",
              "comment": "Fixed before my next class.\nThank you, Sam!"}
    yield "web-thanks", web.render_page(CONFIG, "thanks", survey=thanks)
    for problem in web.PROBLEMS:
        yield f"web-{problem.replace('_', '-')}", web.problem_page(CONFIG, problem)[1]


def write_html(out: Path) -> list[Path]:
    folder = out / "html"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, kind, variables in mails():
        written.append(folder / f"{name}.html")
        written[-1].write_text(templating.render(kind, variables).html)
    for name, html in pages():
        written.append(folder / f"{name}.html")
        written[-1].write_text(html)
    return written


def screenshot_all(files: list[Path], out: Path) -> None:
    import base64

    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="mailhelp-chromium-") as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        # Both paths given, so Selenium Manager never looks for (or downloads) anything.
        driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER),
                                  options=options)
        try:
            for size, (width, height, mobile) in SIZES.items():
                for file in files:
                    png = _capture(driver, file, width, height, mobile)
                    target = out / f"{file.stem}-{size}.png"
                    target.write_bytes(base64.b64decode(png))
                    print(target)
        finally:
            driver.quit()


def _capture(driver, file: Path, width: int, height: int, mobile: bool) -> str:
    """A PNG (base64) of the whole page at this screen size."""
    def emulate(tall: int) -> None:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": tall, "deviceScaleFactor": 1, "mobile": mobile})

    emulate(height)
    driver.get(file.as_uri())
    # A mobile browser shrinks a page wider than the screen: measure what it shows.
    scale = driver.execute_script("return window.visualViewport.scale") or 1
    content = driver.execute_script("return document.documentElement.scrollHeight")
    tall = min(TALLEST, max(height, int(content * scale)))
    if tall != height:
        emulate(tall)
    return driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="/tmp/mailhelp-screens", type=Path)
    parser.add_argument("--html-only", action="store_true", help="write HTML, no screenshots")
    args = parser.parse_args(argv)
    files = write_html(args.out)
    print(f"{len(files)} HTML files in {args.out / 'html'}")
    if args.html_only:
        return 0
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        print("no screenshots: apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 1
    screenshot_all(files, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
