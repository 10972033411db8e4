"""Templates that cannot take the desk down, and the district's look on every mail
(issue 16), over real Dovecot and SMTP."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest

from tests.helpers import mailhelp, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
ADMIN = "tech2@school.test"
# The smallest PNG there is: one transparent pixel.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
                         "DwAChwGA60e6kgAAAABJRU5ErkJggg==")


def request(n: int) -> bytes:
    return (f"From: Jane Teacher <teacher1@school.test>\nTo: {HELP}\n"
            f"Subject: Printer {n} jams\nMessage-ID: <jam-{n}@school.test>\n\n"
            "It jams on every page.\n").encode()


def deliver_and_run(mail, config, raw: bytes):
    client = mail.imap(HELP)
    try:
        client.append("INBOX", raw)
    finally:
        client.logout()
    return mailhelp(config, "run", "--once")


def test_a_broken_override_gives_way_to_the_bundled_template(mail, tmp_path, database_url):
    overrides = tmp_path / "my-templates"
    overrides.mkdir()
    (overrides / "ack.txt.j2").write_text(
        '{% extends "base.txt.j2" %}{% block subject %}{{ ticket.subjet }}{% endblock %}\n')
    config = write_config(tmp_path, database_url, mail, extra=(
        f'[helpdesk]\nadmin = "{ADMIN}"\n[templates]\ndir = "{overrides}"\n'))
    assert mailhelp(config, "init").returncode == 0
    # `check` still fails on it, naming the file and the line.
    checked = mailhelp(config, "check")
    assert checked.returncode == 1 and b"ack.txt.j2" in checked.stdout
    for n in (1, 2):
        done = deliver_and_run(mail, config, request(n))
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        assert b"(0 failed)" in done.stdout
    acks = mail.wait_for_messages("teacher1@school.test", 2, timeout=10)
    subjects = sorted(email.message_from_bytes(a, policy=email.policy.default)["Subject"]
                      for a in acks)
    assert subjects == ["[#1] Printer 1 jams", "[#2] Printer 2 jams"]
    # The admin hears of it once, not once per mail.
    alerts = [m for m in mail.wait_for_messages(ADMIN, 1, timeout=10)
              if b"Needs your attention" in m]
    assert len(alerts) == 1 and b"ack.txt.j2" in alerts[0]
    done = mailhelp(config, "tickets", "list")
    assert done.returncode == 0 and done.stdout.count(b"Printer") == 2


def test_every_mail_carries_the_districts_look(mail, tmp_path, database_url):
    logo = tmp_path / "logo.png"
    logo.write_bytes(PIXEL)
    config = write_config(tmp_path, database_url, mail, extra=(
        f'[helpdesk]\nlogo = "{logo}"\ncolor = "#8f1422"\n'
        'footer = "Springfield School District, 1 Main St"\n'))
    assert mailhelp(config, "init").returncode == 0
    assert b"logo" in mailhelp(config, "check").stdout
    done = deliver_and_run(mail, config, request(1))
    assert done.returncode == 0, done.stderr.decode()
    [ack] = mail.wait_for_messages("teacher1@school.test", 1, timeout=10)
    parsed = email.message_from_bytes(ack, policy=email.policy.default)
    html = parsed.get_body(("html",))
    images = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0].get_content() == PIXEL
    cid = images[0]["Content-ID"].strip("<>")
    body = html.get_content()
    assert f'src="cid:{cid}"' in body and "http" not in body.split("<body", 1)[1]
    assert "#8f1422" in body and "1 Main St" in body
    assert "Springfield School District, 1 Main St" in parsed.get_body(("plain",)).get_content()


def test_a_logo_that_is_not_an_image_is_a_clear_error(mail, tmp_path, database_url):
    bogus = tmp_path / "logo.png"
    bogus.write_text("<svg/>")
    config = write_config(tmp_path, database_url, mail, extra=f'[helpdesk]\nlogo = "{bogus}"\n')
    done = mailhelp(config, "check")
    assert done.returncode == 1
    assert b"helpdesk.logo:" in done.stdout and b"not a PNG or JPEG" in done.stdout
