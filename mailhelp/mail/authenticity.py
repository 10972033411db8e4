"""Did mail from one of our own addresses really come from there? Pure.

Anyone can write any address into From:, and any Authentication-Results header
too. What an attacker cannot write is what the receiving server adds on top of
the message when it arrives. So only the topmost Authentication-Results header
stamped with an authserv-id the config trusts is read (RFC 8601 section 5: the
headers below it, or claiming that id from elsewhere, are ignored); a trusted
header that does not parse is a failure; a DMARC failure is a failure; and a
pass must be aligned with the From: domain (DMARC pass, DKIM of that domain, or
SMTP AUTH as the From: address itself).

Exchange Online writes its Authentication-Results without an authserv-id and
records its own verdict for mail from inside the organisation in
``X-MS-Exchange-Organization-AuthAs``, a header its header firewall removes from
mail arriving from outside. With ``microsoft365`` among the trusted ids, those
two are read instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses
from enum import StrEnum

MICROSOFT365 = "microsoft365"  # the pseudo authserv-id for Exchange Online's headers
_HEAD_LIMIT = 256 * 1024  # a header block past this is not read further
_FIELD = re.compile(rb"^([!-9;-~]+):[ \t]*(.*(?:\r?\n[ \t].*)*)", re.M)
_IP_LITERAL = re.compile(r"=\s*\[([0-9A-Fa-f:.]{1,45})\]")
_COMMENT = re.compile(r"\([^()]*\)")


class Proof(StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"
    UNKNOWN = "unknown"  # no header from a trusted server: nothing to judge by


VERIFIED, FAILED, UNKNOWN = Proof.VERIFIED, Proof.FAILED, Proof.UNKNOWN


@dataclass(frozen=True)
class Verdict:
    status: Proof
    reason: str


def check(raw: bytes, sender: str, trusted_ids: tuple[str, ...]) -> Verdict:
    """How the receiving server vouches for ``sender`` (the From: address) in ``raw``."""
    if not trusted_ids:
        return Verdict(UNKNOWN, "no trusted authserv-id configured")
    domain = sender.rpartition("@")[2].lower()
    fields = header_fields(raw)
    senders = [v for n, v in fields if n == "from"]
    if len(senders) != 1 or len(getaddresses(senders)) != 1:
        # DKIM signs the last From: of several, the desk reads the first: a From: put on
        # top of a genuinely signed mail would borrow its pass.
        return Verdict(FAILED, "not exactly one address in exactly one From: header")
    if MICROSOFT365 in trusted_ids:
        verdict = _exchange(fields, sender, domain)
        if verdict is not None:
            return verdict
    block = _topmost(fields, trusted_ids)
    if block is None:
        return Verdict(UNKNOWN, "no Authentication-Results from a trusted server")
    return judge(block, sender, domain)


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header block as (lower-case name, unfolded value) pairs, top to bottom."""
    end = min(_end_of_head(raw), _HEAD_LIMIT)
    head = raw[:end]
    return [(m.group(1).decode("ascii").lower(),
             " ".join(m.group(2).decode("utf-8", "replace").split()))
            for m in _FIELD.finditer(head)]


def _end_of_head(raw: bytes) -> int:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else len(raw)


Results = list[tuple[str, str, dict[str, str]]]


def _topmost(fields: list[tuple[str, str]], trusted_ids: tuple[str, ...]) -> Results | None:
    """The results of the topmost Authentication-Results header with a trusted
    authserv-id; None if there is none. One header, not the run below it: a server
    writes its verdict on top (RFC 8601 section 4), and an attacker's header with the
    same id can sit right below it (Gmail's, say, has nothing in between), adding a
    method the server did not report. Where two milters each write one (OpenDKIM,
    then OpenDMARC on top), the topmost carries the DMARC verdict. A trusted header
    that does not parse stands as a failure."""
    for name, value in fields:
        if name == "authentication-results" and authserv_id(value) in trusted_ids:
            parsed = parse_results(value)
            return parsed if parsed is not None else [("parse", "fail",
                                                        {"header": value[:80]})]
    return None


def authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with ('' if none)."""
    first = _COMMENT.sub(" ", value.partition(";")[0]).split()
    return first[0].lower() if first and "=" not in first[0] else ""


def parse_results(value: str) -> Results | None:
    """(method, result, properties) of one header value, or None if it does not parse.

    Two things real servers write and authres refuses are put the way it reads them
    first: a trailing ';' and an address literal (``smtp.helo=[192.0.2.1]``)."""
    import authres

    text = _IP_LITERAL.sub(lambda m: f'="[{m.group(1)}]"', value.strip()).rstrip("; ")
    if not authserv_id(text):
        text = "unknown; " + text  # Exchange Online writes none
    try:
        header = authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:
        return None
    found = []
    for result in header.results:
        properties = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        found.append((str(result.method).lower(), str(result.result).lower(), properties))
    return found


def judge(results: Results, sender: str, domain: str) -> Verdict:
    """An aligned pass, unless the server said DMARC failed; the first result of each
    method counts."""
    first: dict[str, tuple[str, dict[str, str]]] = {}
    for method, result, properties in results:
        first.setdefault(method, (result, properties))
    seen = ", ".join(f"{m}={r}" for m, (r, _) in first.items())
    if "parse" in first:
        return Verdict(FAILED, f"a trusted Authentication-Results header does not parse "
                               f"({first['parse'][1]['header']!r})")
    dmarc = first.get("dmarc")
    if dmarc is not None and dmarc[0] == "fail":
        return Verdict(FAILED, f"dmarc={dmarc[0]} ({seen})")
    if dmarc is not None and dmarc[0] == "pass" \
            and aligned(dmarc[1].get("header.from", ""), domain):
        return Verdict(VERIFIED, "dmarc=pass")
    dkim = first.get("dkim")
    if dkim is not None and dkim[0] == "pass" and aligned(
            dkim[1].get("header.d") or dkim[1].get("header.i", ""), domain):
        return Verdict(VERIFIED, "dkim=pass, aligned")
    auth = first.get("auth")
    if auth is not None and auth[0] == "pass" \
            and auth[1].get("smtp.auth", "").lower() == sender.lower():
        return Verdict(VERIFIED, "auth=pass as the sender")
    return Verdict(FAILED, f"no aligned pass for {domain} ({seen or 'no results'})")


def aligned(value: str, domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other (a parent of
    at least two labels: never a bare top-level domain)."""
    value = value.rpartition("@")[2].lower().strip()
    return bool(value) and (value == domain or value.endswith("." + domain)
                            or ("." in value and domain.endswith("." + value)))


def _exchange(fields: list[tuple[str, str]], sender: str, domain: str) -> Verdict | None:
    """Exchange Online's verdict: Internal (authenticated inside the organisation) is a
    pass; otherwise its topmost Authentication-Results (written without an id) decides.
    None where the message carries no Exchange header at all."""
    auth_as = next((v for n, v in fields if n == "x-ms-exchange-organization-authas"), None)
    if auth_as is None:
        return None
    if auth_as.strip().lower() == "internal":
        return Verdict(VERIFIED, "Exchange Online: AuthAs Internal")
    value = next((v for n, v in fields if n == "authentication-results"), None)
    if value is None or authserv_id(value):
        return Verdict(FAILED, f"Exchange Online: AuthAs {auth_as}, no verdict of its own")
    parsed = parse_results(value)
    if parsed is None:
        return Verdict(FAILED, "Exchange Online's Authentication-Results does not parse")
    verdict = judge(parsed, sender, domain)
    return Verdict(verdict.status, f"Exchange Online: AuthAs {auth_as}, {verdict.reason}")
