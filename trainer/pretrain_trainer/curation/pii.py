"""Personal data in text: e-mail addresses, phone numbers, IP addresses, payment-card numbers and IBANs.

Patterns find candidates; checks keep false positives out: a card number must pass the Luhn check and start
like a card (Visa 4, Mastercard 51–55/22–27, Amex 34/37, Discover/UnionPay 6, Diners 30/36/38, JCB 35), an
IBAN must pass its ISO 7064 mod-97 check, an IPv4 address has four octets ≤ 255 and is not part of a longer
dotted number (a version such as 1.2.3.4.5), an IPv6 address must parse, and a phone number needs 8–15 digits
in a phone-like layout (international +CC, a (area) code, or a leading trunk 0), so years, dates, prices,
times and grouped numbers such as "70 338" are left alone.

`find(text)` lists non-overlapping matches; `redact(text)` replaces them with placeholders such as `<EMAIL>`;
`mask(kind, value)` shows a match without revealing it (for reports).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

KINDS = ("email", "iban", "credit_card", "ip_address", "phone")
PLACEHOLDERS = {
    "email": "<EMAIL>",
    "iban": "<IBAN>",
    "credit_card": "<CREDIT_CARD>",
    "ip_address": "<IP_ADDRESS>",
    "phone": "<PHONE>",
}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d.,-]?\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"""(?<![\w+])(?:
        \+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}   # +46 8 123 45 67, +1 (555) 010-9999
      | \(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}                              # (555) 010-9999
      | 0\d{1,4}[ /-]\d{2,4}(?:[ -]?\d{2,4}){1,3}                          # 08-123 45 67, 030 1234 5678
      | \d{3}[.-]\d{3}[.-]\d{4}                                            # 555-010-9999
    )(?![\w])""",
    re.VERBOSE,
)
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|35|6)")


@dataclass(frozen=True)
class Match:
    kind: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    compact = value.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _card_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _ipv6_ok(value: str) -> bool:
    if value.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", value):
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _phone_ok(value: str) -> bool:
    return 8 <= sum(c.isdigit() for c in value) <= 15


_CHECKS = (
    ("email", _EMAIL, None),
    ("iban", _IBAN, iban_ok),
    ("credit_card", _CARD, _card_ok),
    ("ip_address", _IPV4, None),
    ("ip_address", _IPV6, _ipv6_ok),
    ("phone", _PHONE, _phone_ok),
)


def find(text: str) -> list[Match]:
    """Personal data in `text`, in order of position; earlier kinds in KINDS win where matches overlap."""
    taken: list[Match] = []
    for kind, pattern, check in _CHECKS:
        if kind == "email" and "@" not in text:
            continue
        for m in pattern.finditer(text):
            if check is not None and not check(m.group()):
                continue
            if any(m.start() < t.end and t.start < m.end() for t in taken):
                continue
            taken.append(Match(kind, m.start(), m.end(), m.group()))
    return sorted(taken, key=lambda t: t.start)


def redact(text: str, matches: list[Match] | None = None) -> str:
    """`text` with every match replaced by its kind's placeholder."""
    out = []
    pos = 0
    for m in find(text) if matches is None else matches:
        out.append(text[pos : m.start])
        out.append(PLACEHOLDERS[m.kind])
        pos = m.end
    out.append(text[pos:])
    return "".join(out)


def mask(kind: str, value: str) -> str:
    """A shape of `value` that identifies nobody: the e-mail's first letter and domain, the last digits of
    numbers, the first two octets of an address."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "ip_address":
        if "." in value:
            return ".".join([*value.split(".")[:2], "*", "*"])
        return value.split(":")[0] + ":****:…"
    keep = 4 if kind in ("credit_card", "iban") else 2
    shown = value[:2] if kind == "iban" else ""
    digits_seen = 0
    masked = []
    for ch in reversed(value):
        if ch.isalnum():
            digits_seen += 1
            masked.append(ch if digits_seen <= keep else "*")
        else:
            masked.append(ch)
    body = "".join(reversed(masked))
    return shown + body[len(shown) :] if shown else body
