"""The SMTP transport against a real SMTP server (aiosmtpd) that answers as told:
refusals come back as values saying whether trying again can help."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mailhelp.config import SmtpConfig
from mailhelp.delivery.transport import DeliveryError, SmtpTransport
from mailhelp.localmail import free_port
from mailhelp.tls import tls_context

MAIL = b"From: help@school.test\r\nTo: teacher1@school.test\r\nSubject: hi\r\n\r\nHello\r\n"


def send(port: int, recipients: list[str]):
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, security="none"))

    async def run():
        try:
            return await transport.send("help@school.test", recipients, MAIL)
        finally:
            await transport.close()
    return asyncio.run(run())


def test_an_accepted_mail_reaches_the_server(smtp_server):
    handler, port = smtp_server
    assert send(port, ["teacher1@school.test", "tech1@school.test"]) == {}
    [(mail_from, to, content)] = handler.received
    assert to == ["teacher1@school.test", "tech1@school.test"] and b"Hello" in content


def test_refused_recipients_come_back_temporary_or_permanent(smtp_server):
    handler, port = smtp_server
    handler.rcpt_answer = {"a@school.test": "451 4.3.0 try later",
                           "b@school.test": "550 5.1.1 no such user"}
    refused = send(port, ["a@school.test", "b@school.test", "c@school.test"])
    assert refused["a@school.test"].temporary and "451" in refused["a@school.test"].reason
    assert refused["b@school.test"].permanent and "550 5.1.1" in refused["b@school.test"].reason
    assert "c@school.test" not in refused
    assert [to for _, to, _ in handler.received] == [["c@school.test"]]


def test_every_recipient_refused_is_a_value_too(smtp_server):
    handler, port = smtp_server
    handler.rcpt_answer = {"a@school.test": "550 5.1.1 no such user"}
    refused = send(port, ["a@school.test"])
    assert refused["a@school.test"].permanent and handler.received == []


def test_data_refused_temporarily_raises_a_temporary_failure(smtp_server):
    handler, port = smtp_server
    handler.data_answer = "452 4.3.1 insufficient storage"
    with pytest.raises(DeliveryError) as raised:
        send(port, ["a@school.test"])
    assert raised.value.failure.temporary and "452" in raised.value.failure.reason


def test_a_server_that_is_not_there_is_a_temporary_failure():
    with pytest.raises(DeliveryError, match="cannot connect to smtp server") as raised:
        send(free_port(), ["a@school.test"])
    assert raised.value.failure.temporary


def test_the_tls_context_verifies_unless_told_not_to():
    assert tls_context("", True).verify_mode == ssl.CERT_REQUIRED
    unverified = tls_context("", False)
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname
