"""Did staff mail really come from staff? Judged from Authentication-Results. Pure.

Anyone can write a staff address into From:. The receiving server checks DMARC,
DKIM and SPF and records the results; we trust only headers stamped with our own
server's authserv-id, and only results aligned with the From: domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from .parse import Inbound

VERIFIED = "verified"
FAILED = "failed"
UNKNOWN = "unknown"  # no trusted Authentication-Results header


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str


def check(inbound: Inbound, trusted_ids: tuple[str, ...]) -> Verdict:
    if not trusted_ids:
        return Verdict(UNKNOWN, "no trusted authserv-id configured")
    domain = inbound.sender.address.rpartition("@")[2]
    results = [r for value in inbound.headers.get("authentication-results", ())
               for r in _trusted_results(value, trusted_ids)]
    if not results:
        return Verdict(UNKNOWN, "no Authentication-Results from a trusted server")
    for method, result, properties in results:
        if result != "pass":
            continue
        if method == "dmarc" and _aligned(properties.get("header.from", ""), domain):
            return Verdict(VERIFIED, "dmarc=pass")
        if method == "dkim" and _aligned(properties.get("header.d")
                                         or properties.get("header.i", ""), domain):
            return Verdict(VERIFIED, "dkim=pass, aligned")
        if method == "spf" and _aligned(properties.get("smtp.mailfrom", ""), domain):
            return Verdict(VERIFIED, "spf=pass, aligned")
    seen = ", ".join(f"{m}={r}" for m, r, _ in results)
    return Verdict(FAILED, f"no aligned pass for {domain} ({seen})")


def _aligned(value: str, domain: str) -> bool:
    """Relaxed alignment: the same organisational domain or a subdomain of it."""
    value = value.rpartition("@")[2].lower().strip()
    return bool(value) and (value == domain or value.endswith("." + domain)
                            or domain.endswith("." + value))


def _trusted_results(value: str, trusted_ids: tuple[str, ...]) -> list[tuple[str, str, dict]]:
    import authres

    try:
        header = authres.AuthenticationResultsHeader.parse_value(value)
    except Exception:
        # Microsoft 365 leaves the authserv-id out; such a header is not ours to trust.
        return []
    if (header.authserv_id or "").lower() not in trusted_ids:
        return []
    found = []
    for result in header.results:
        properties = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        found.append((str(result.method).lower(), str(result.result).lower(), properties))
    return found
