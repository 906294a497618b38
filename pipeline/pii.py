"""Personal information in text: where e-mail addresses, public IP addresses, phone numbers, Chinese
resident identity numbers and payment card numbers are, and the text with them replaced.

`find_pii(text)` gives each finding as (kind, start, end), Python string offsets, sorted and never
overlapping; `redact(text, spans, placeholders)` replaces the spans of the kinds it is given. No model:
patterns, then a validation that a look-alike fails.

- email: local@domain.tld, ASCII, the top-level domain letters only and not an image or code file
  extension (`logo@2x.png` is a file name); a capitalised last label after a dot is the next sentence
  run on without a space (`contact@example.com.What`), not part of the address.
- ip_address: IPv4 in dotted decimal (no leading zeros) and IPv6, public only as FineWeb and DataTrove
  redact them (`ipaddress`'s is_global; IPv6 also inside 2000::/3, where every public address is
  assigned, so `a::b` in C++ or `dead::beef` is no address). An IPv4-shaped string after "version",
  "ver", "v", "release", "build", "section" or 版本 is a version or section number, not an address.
- phone: international numbers written with + (`+44 20 7946 0958`, `+1 (415) 555-0100`, 8 to 15
  digits, E.164's longest), and Chinese mobile numbers (11 digits 1[3-9]..., bare or as 3-4-4 groups
  split by a space or a dash). Local forms of other countries (`(415) 555-0100`) are not found: without
  the country code they look like any other number.
- id_number: Chinese resident identity numbers, 18 characters: a province code in use, a real birth
  date (1800-2099), three digits, and the ISO 7064 MOD 11-2 check character (0-9 or X).
- card_number: 13 to 19 digits, bare or in groups of four (Amex and Diners 4-6-5 and 4-6-4) split by
  one space or dash, with a known issuer prefix and length (Visa, Mastercard, Amex, Discover, JCB,
  UnionPay, Diners, Maestro) and a valid Luhn check digit.

Every number stands alone: not inside a longer run of digits, an identifier, a URL path or query
(`/item/13812345678`, `?id=...`) or a dotted number; digits are ASCII. When two findings overlap the
earlier kind in KINDS wins (an e-mail `13812345678@qq.com` is one e-mail, not a phone inside one).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

EMAIL = "email"
ID_NUMBER = "id_number"
CARD_NUMBER = "card_number"
PHONE = "phone"
IP_ADDRESS = "ip_address"
KINDS = (EMAIL, ID_NUMBER, CARD_NUMBER, PHONE, IP_ADDRESS)  # also the precedence of overlapping findings
PLACEHOLDERS = {EMAIL: "<EMAIL>", ID_NUMBER: "<ID_NUMBER>", CARD_NUMBER: "<CARD_NUMBER>", PHONE: "<PHONE>",
                IP_ADDRESS: "<IP_ADDRESS>"}


class PiiSpan(NamedTuple):
    kind: str
    start: int
    end: int



def _first_not_after(first: str, not_after: str) -> str:
    """A pattern's first character `first` (a class), not preceded by one of the class `not_after`.
    Boundaries are in ASCII terms: a Chinese character is a word character to `\\b`, but 邮箱a@b.com is
    an address. The lookbehind comes after the first character (two wide: the one before and it) so that
    each pattern starts with a character class, which the regex engine skips ahead to: a pattern that
    starts with a lookbehind is tried at every position, several times slower on text with few digits."""
    return f"{first}(?<![{not_after}].)"


_NOT_BEFORE = r"(?![0-9A-Za-z_])"
# A number does not continue a dotted or dashed number, a URL path or query, or a handle.
_NUMBER_NOT_AFTER = r"0-9A-Za-z_.+\-/=#&?%@:"
_NUMBER_END = r"(?![0-9A-Za-z_]|[.,\-/:][0-9])"

_EMAIL = re.compile(
    _first_not_after(r"[A-Za-z0-9_%+\-]", r"0-9A-Za-z_.%+\-") + r"[A-Za-z0-9_%+\-]*(?:\.[A-Za-z0-9_%+\-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})(?![0-9A-Za-z_\-]|\.[0-9A-Za-z])")
_FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp ico tif tiff avif css js mjs ts json xml html htm".split())

# Four numbers of 1-3 digits; ipaddress then refuses an octet over 255 or with a leading zero.
_IPV4 = re.compile(_first_not_after("[0-9]", r"0-9A-Za-z_.\-") + r"[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9A-Za-z_\-]|\.[0-9])")
_VERSION_BEFORE = re.compile(r"(?:\b(?:version|ver|v|release|build|section|sec|§)\.?|版本号?)\s*[:：#]?\s*$", re.IGNORECASE)
# Cheap tests a text must pass before the address patterns run: each starts with a literal character,
# which the regex engine finds far faster than a class (1 us against 15 us on a 2,500-character page).
_IPV4_GATE = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.")
_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")
# In 2000::/3 the first group is four hex digits from 2000 to 3fff.
_IPV6 = re.compile(_first_not_after("[23]", r"0-9A-Za-z_:.\-")
                   + r"[0-9A-Fa-f]{3}:(?:[0-9A-Fa-f]{0,4}:){1,6}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z_:\-]|\.[0-9A-Za-z])")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")

# After the +, a run of digits, single separators before a digit or "(", and "(0)"-style groups: each
# step starts with a different character, so a long digit run is read once, never split every way.
_INTERNATIONAL_PHONE = re.compile(
    _first_not_after(r"\+", r"0-9A-Za-z_+")
    + r"[1-9](?:[0-9]|[ .\-](?=[0-9(])|\([0-9]{1,4}\)(?=[ .\-]?[0-9]))*" + _NUMBER_END)
_PHONE_DIGITS = (8, 15)  # E.164: at most 15 digits, country code included
_CHINESE_MOBILE = re.compile(_first_not_after("1", _NUMBER_NOT_AFTER) + r"[3-9][0-9](?:[0-9]{8}|([ \-])[0-9]{4}\1[0-9]{4})" + _NUMBER_END)

_ID_NUMBER = re.compile(
    _first_not_after("[1-9]", _NUMBER_NOT_AFTER) + r"[0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
    + _NOT_BEFORE)
# GB/T 2260 province-level codes: the first two digits of every resident identity number.
_PROVINCES = frozenset("11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 "
                       "71 81 82 83".split())
_ID_WEIGHTS = tuple(2 ** (17 - i) % 11 for i in range(17))

_CARD_NUMBER = re.compile(
    _first_not_after("[0-9]", _NUMBER_NOT_AFTER) + r"(?:[0-9]{12,18}|[0-9]{3}([ \-])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"
    r"|[0-9]{3}([ \-])[0-9]{6}\2[0-9]{4,5})" + _NUMBER_END)
# (prefixes, lengths) per network, as ISO/IEC 7812 issuer identification numbers are assigned.
_CARD_ISSUERS = (
    (("4",), (13, 16, 19)),  # Visa
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), (16,)),  # Mastercard
    (("34", "37"), (15,)),  # American Express
    (("6011", "65") + tuple(str(p) for p in range(644, 650)), (16, 17, 18, 19)),  # Discover
    (tuple(str(p) for p in range(3528, 3590)), (16, 17, 18, 19)),  # JCB
    (("62",), (16, 17, 18, 19)),  # UnionPay
    (("36", "38", "39") + tuple(str(p) for p in range(300, 306)), (14, 15, 16)),  # Diners Club
    (("50", "56", "57", "58", "67"), (13, 14, 15, 16, 17, 18, 19)),  # Maestro
)


def find_pii(text: str) -> list[PiiSpan]:
    """Every finding in `text`, sorted by start; where two overlap, the one of the earlier kind in KINDS."""
    if not text:
        return []
    found = [*_emails(text), *_id_numbers(text), *_card_numbers(text), *_phones(text), *_ip_addresses(text)]
    rank = {kind: i for i, kind in enumerate(KINDS)}
    taken: list[PiiSpan] = []
    for span in sorted(found, key=lambda s: (rank[s.kind], s.start)):
        if all(span.end <= other.start or other.end <= span.start for other in taken):
            taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def redact(text: str, spans: Iterable[Sequence], placeholders: Mapping[str, str]) -> str:
    """`text` with each span (kind, start, end) of a kind in `placeholders` replaced by its placeholder;
    spans of other kinds stay. The spans must not overlap (find_pii's never do)."""
    pieces, at = [], 0
    for kind, start, end in sorted(spans, key=lambda s: s[1]):
        if kind in placeholders:
            pieces += [text[at:start], placeholders[kind]]
            at = end
    return "".join(pieces) + text[at:] if pieces else text


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def id_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident identity number's first 17 digits."""
    remainder = (12 - sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11) % 11
    return "X" if remainder == 10 else str(remainder)


def _emails(text: str) -> Iterable[PiiSpan]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        end, labels = match.end(), match.group(0).rsplit("@", 1)[1].split(".")
        if len(labels) > 2 and labels[-1].istitle() and not labels[-1].isupper():
            # "us at contact@example.com.What are...": a sentence after a missing space, not a domain label
            end -= len(labels[-1]) + 1
            labels.pop()
        if labels[-1].isalpha() and len(labels[-1]) >= 2 and labels[-1].lower() not in _FILE_EXTENSIONS:
            yield PiiSpan(EMAIL, match.start(), end)


def _id_numbers(text: str) -> Iterable[PiiSpan]:
    for match in _ID_NUMBER.finditer(text):
        number = match.group(0).upper()
        if number[:2] in _PROVINCES and _real_date(number[6:14]) and id_check_character(number[:17]) == number[17]:
            yield PiiSpan(ID_NUMBER, match.start(), match.end())


def _real_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def _card_numbers(text: str) -> Iterable[PiiSpan]:
    for match in _CARD_NUMBER.finditer(text):
        digits = re.sub(r"[ \-]", "", match.group(0))
        if luhn_valid(digits) and any(digits.startswith(prefixes) and len(digits) in lengths
                                      for prefixes, lengths in _CARD_ISSUERS):
            yield PiiSpan(CARD_NUMBER, match.start(), match.end())


def _phones(text: str) -> Iterable[PiiSpan]:
    if "+" in text:
        for match in _INTERNATIONAL_PHONE.finditer(text):
            digits = sum(char.isdigit() for char in match.group(0))
            if _PHONE_DIGITS[0] <= digits <= _PHONE_DIGITS[1]:
                yield PiiSpan(PHONE, match.start(), match.end())
    for match in _CHINESE_MOBILE.finditer(text):
        yield PiiSpan(PHONE, match.start(), match.end())


def _ip_addresses(text: str) -> Iterable[PiiSpan]:
    for match in _IPV4.finditer(text) if _IPV4_GATE.search(text) else ():
        try:
            address = ipaddress.IPv4Address(match.group(0))
        except ValueError:
            continue
        if address.is_global and not _VERSION_BEFORE.search(text, max(0, match.start() - 20), match.start()):
            yield PiiSpan(IP_ADDRESS, match.start(), match.end())
    if _IPV6_GATE.search(text):
        for match in _IPV6.finditer(text):
            candidate = match.group(0)
            if sum(1 for group in candidate.split(":") if group) < 3:
                continue
            try:
                address = ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            if address.is_global and address in _GLOBAL_UNICAST:
                yield PiiSpan(IP_ADDRESS, match.start(), match.end())
