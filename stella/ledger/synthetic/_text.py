"""Canonical-text assembly and the cheap draws every synthetic document is made of.

Generators write RFC 8785 text directly, because building dicts and canonicalising
them is several times slower than the whole generator: members are emitted in sorted
key order (keys are ASCII identifiers chosen in this package, so code-point order is
UTF-16 order), free text goes through the C string encoder the canonical fast path
uses, and no value is a float.

All randomness comes from one ``Random.random`` per block of documents -- the only
method whose sequence Python promises to keep across versions -- turned into integers by
``int(u() * n)``, which is exact IEEE arithmetic on every platform. Anything costlier
than a draw and an index (hex digests, timestamps, GHSA ids, CVSS vectors, prose) is
assembled from tables built once, at import, from fixed seeds.
"""

from __future__ import annotations

import bisect
import functools
import json.encoder
import random
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import TypeVar

__all__ = [
    "DAYS",
    "Draw",
    "arr",
    "cve",
    "cvss",
    "cvss4",
    "day_in",
    "enc",
    "ghsa",
    "later",
    "obj",
    "pick",
    "popular",
    "prose",
    "quant",
    "sha1_like",
    "stamp",
    "strs",
    "table_draw",
    "uuid4",
    "weighted",
    "years",
]

T = TypeVar("T")
Draw = Callable[[], float]
enc: Callable[[str], str] = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept


def obj(members: dict[str, str]) -> str:
    """A JSON object from already-encoded values, members in RFC 8785 (sorted) order."""
    return "{" + ",".join([f'"{k}":{v}' for k, v in sorted(members.items())]) + "}"


def arr(items: Iterable[str]) -> str:
    return "[" + ",".join(items) + "]"


def strs(values: Sequence[str]) -> str:
    """A JSON array of strings that need no escaping (ids, versions, purls, URLs)."""
    return '["' + '","'.join(values) + '"]' if values else "[]"


# --- draws -------------------------------------------------------------------------------

# Quantile points of the empirical tables (min, p10, p25, median, p75, p90, p95, p99, max).
_QPOINTS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def pick(u: Draw, seq: Sequence[T]) -> T:
    return seq[int(u() * len(seq))]


def popular(u: Draw, seq: Sequence[T]) -> T:
    """Favour the head of a pool: a few packages collect most advisories, as in real feeds."""
    return seq[int(u() * u() * len(seq))]


def quant(u: Draw, table: tuple[int, ...]) -> int:
    """Draw from a distribution given by its values at the quantile points (linear in between)."""
    x = u()
    k = bisect.bisect_right(_QPOINTS, x) - 1
    lo = _QPOINTS[k]
    return table[k] + int((table[k + 1] - table[k]) * (x - lo) / (_QPOINTS[k + 1] - lo))


def weighted(pairs: Iterable[tuple[T, int]]) -> tuple[T, ...]:
    """An expanded table, so that a weighted draw is one index."""
    return tuple(value for value, weight in pairs for _ in range(weight))


def table_draw(name: str) -> Draw:
    """The stream a lookup table is built from: fixed per table, independent of the others."""
    return random.Random(f"stella-synthetic-table:{name}").random


_HEX_DRAW = table_draw("hex")
_HEX20 = tuple(f"{int(_HEX_DRAW() * 16**10):010x}{int(_HEX_DRAW() * 16**10):010x}" for _ in range(4096))


def sha1_like(u: Draw) -> str:
    """Forty hex digits (a commit id); collisions across unrelated repositories are harmless."""
    return _HEX20[int(u() * 4096)] + _HEX20[int(u() * 4096)]


def uuid4(u: Draw, tag: int, index: int) -> str:
    """A version-4 UUID spelling, unique per (tag, document index below 2**32) by construction."""
    h = _HEX20[int(u() * 4096)]
    tail = f"{tag & 0xFFFF:04x}{index & 0xFFFFFFFF:08x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{tail}"


_GHSA_DRAW = table_draw("ghsa")
_GHSA_HALVES = tuple("".join(pick(_GHSA_DRAW, "23456789cfghjmpqrvwx") for _ in range(6)) for _ in range(4096))


def ghsa(u: Draw) -> str:
    """A GitHub advisory id (``GHSA-xxxx-xxxx-xxxx`` over GitHub's 20-letter alphabet)."""
    s = _GHSA_HALVES[int(u() * 4096)] + _GHSA_HALVES[int(u() * 4096)]
    return f"GHSA-{s[:4]}-{s[4:8]}-{s[8:]}"


def cve(u: Draw, year: int) -> str:
    # ~40k numbers a year, so at scale several feeds (and VEX statements) name the same CVE.
    return f"CVE-{year - (u() < 0.3)}-{1000 + int(u() * 40000)}"


# --- time --------------------------------------------------------------------------------

_EPOCH = date(2004, 1, 1)
DAYS: tuple[str, ...] = tuple(
    (_EPOCH + timedelta(d)).isoformat() for d in range((date(2026, 6, 30) - _EPOCH).days + 1)
)
_YEAR_START = {y: (date(y, 1, 1) - _EPOCH).days for y in range(2004, 2027)}
_MINUTES = tuple(f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))
# Advisories published per year, shaped like the PyPA history (steep growth after 2016).
_YEAR_WEIGHTS = ((2005, 1), (2006, 1), (2007, 2), (2008, 2), (2009, 3), (2010, 3), (2011, 4), (2012, 4),
                 (2013, 5), (2014, 7), (2015, 7), (2016, 9), (2017, 14), (2018, 16), (2019, 20), (2020, 28),
                 (2021, 40), (2022, 36), (2023, 34), (2024, 36), (2025, 32))  # fmt: skip


@functools.cache
def years(first: int) -> tuple[int, ...]:
    """Publication years from ``first`` on, weighted like the real feeds."""
    return weighted((y, w) for y, w in _YEAR_WEIGHTS if y >= first)


def day_in(u: Draw, year: int) -> int:
    return min(_YEAR_START[year] + int(u() * 365), len(DAYS) - 1)


def later(u: Draw, day: int) -> int:
    """A later day (so any time on it is later): usually soon after, sometimes years later."""
    return min(day + 1 + int(u() * u() * (len(DAYS) - 2 - day)), len(DAYS) - 1)


def stamp(u: Draw, day: int, precision: str = "s", zone: str = "Z") -> str:
    """RFC 3339 at second, millisecond or microsecond precision, as the various feeds write it."""
    t = int(u() * 86400)
    text = DAYS[day] + _MINUTES[t // 60] + _SECONDS[t % 60]
    if precision == "ms":
        return f"{text}.{int(u() * 1000):03d}{zone}"
    if precision == "us":
        return f"{text}.{int(u() * 1000000):06d}{zone}"
    return text + zone


# --- CVSS --------------------------------------------------------------------------------


def _cvss_tenths(av: str, ac: str, pr: str, ui: str, s: str, c: str, i: str, a: str) -> int:
    """CVSS 3.1 base score in tenths (specification section 7.1), exact in IEEE doubles."""
    changed = s == "C"
    cia = {"H": 0.56, "L": 0.22, "N": 0.0}
    iss = 1 - (1 - cia[c]) * (1 - cia[i]) * (1 - cia[a])
    if changed:
        x = iss - 0.02
        x3 = x * x * x
        impact = 7.52 * (iss - 0.029) - 3.25 * (x3 * x3 * x3 * x3 * x3)  # (ISS - 0.02)^15 without pow()
    else:
        impact = 6.42 * iss
    if impact <= 0:
        return 0
    priv = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[pr]
    exploit = 8.22 * {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}[av] * (0.77 if ac == "L" else 0.44)
    exploit *= priv * (0.85 if ui == "N" else 0.62)
    scaled = round(min((impact + exploit) * (1.08 if changed else 1), 10) * 100000)
    return scaled // 10000 + (scaled % 10000 != 0)  # the specification's Roundup


_SEVERITIES = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")  # from 0, 0.1, 4.0, 7.0, 9.0


def _cvss_pool() -> tuple[tuple[str, str], ...]:
    """4096 (vector, severity) pairs with metric values weighted like NVD's population."""
    draw = table_draw("cvss3")
    choices = ("NNNNNNNALP", "LLLLLLLLLH", "NNNNNNLLLH", "NNNNNR", "UUUUUC", "HHHHLLN", "HHHHLLN", "HHHHLNN")
    pool = []
    for _ in range(4096):
        m = [pick(draw, c) for c in choices]
        label = _SEVERITIES[bisect.bisect_right((1, 40, 70, 90), _cvss_tenths(*m))]
        pool.append(
            (f"CVSS:3.1/AV:{m[0]}/AC:{m[1]}/PR:{m[2]}/UI:{m[3]}/S:{m[4]}/C:{m[5]}/I:{m[6]}/A:{m[7]}", label)
        )
    return tuple(pool)


_CVSS = _cvss_pool()
_CVSS4_DRAW = table_draw("cvss4")
_CVSS4 = tuple(
    "CVSS:4.0/AV:{}/AC:{}/AT:{}/PR:{}/UI:{}/VC:{}/VI:{}/VA:{}/SC:N/SI:N/SA:N".format(
        *(pick(_CVSS4_DRAW, c) for c in ("NNNAL", "LLH", "NNP", "NNLH", "NNPA", "HLN", "HLN", "HLN"))
    )
    for _ in range(1024)
)


def cvss(u: Draw) -> tuple[str, str]:
    """A CVSS 3.1 vector and its qualitative severity (NONE, LOW, MEDIUM, HIGH, CRITICAL)."""
    return _CVSS[int(u() * 4096)]


def cvss4(u: Draw) -> str:
    """A CVSS 4.0 vector (GitHub adds one to about a fifth of its advisories)."""
    return _CVSS4[int(u() * 1024)]


# --- prose -------------------------------------------------------------------------------

_FILLER = (
    "This issue has been patched in the fixed release and users are advised to upgrade.",
    "There are no known workarounds for this vulnerability.",
    "The vulnerable code path is reachable only when the optional feature is enabled in the configuration.",
    "Applications that pass untrusted input to the affected function are at risk.",
    "The flaw exists because input length is not checked before it is copied into a fixed-size buffer.",
    "Exploitation requires the attacker to be able to send requests to an exposed endpoint.",
    "A proof of concept was published by the reporter after the coordinated disclosure period.",
    "Versions prior to the fix do not validate the value before using it in a filesystem path.",
    "The maintainers thank the reporter for the responsible disclosure of this issue.",
    "Deployments behind a reverse proxy that normalises headers are not affected.",
    "NOTE: this issue exists because of an incomplete fix for an earlier vulnerability.",
    "As a workaround, disable the affected endpoint or restrict it to trusted networks.",
    "The default configuration is not vulnerable, but several popular integrations enable the option.",
    "An attacker could leverage this to bypass the sandbox and access data of other tenants.",
    "The parser allocates memory proportional to the declared size without an upper bound.",
    "Because the comparison is not constant-time, an attacker can recover the secret byte by byte.",
    "The fix adds validation of the length field and rejects inputs that exceed the limit.",
    "Users who cannot upgrade immediately should set the maximum request size explicitly.",
    "The issue was discovered with a fuzzer and reported through the project's security policy.",
    "Only applications that deserialize data from untrusted sources are impacted.",
    "The affected releases also ship the vulnerable code in their command-line tools.",
    "Prior versions log the full request, including credentials, at the default log level.",
    "Certificate hostname checks were skipped when the connection reused a pooled session.",
    'Calls such as `load(data, unsafe=True)` or "eval"-style helpers must not receive user input.',
    "Thanks to Zoë Müller and the Ærø security group for the coordinated report.",
)


def _corpus(paragraphs: bool) -> tuple[str, list[int]]:
    """Filler sentences in several shuffled orders, and the offset where each sentence starts."""
    draw = table_draw(f"corpus:{paragraphs}")
    sentences: list[str] = []
    for _ in range(12):
        batch = list(_FILLER)
        for k in range(len(batch) - 1, 0, -1):  # Fisher-Yates on random(): Random.shuffle may change
            j = int(draw() * (k + 1))
            batch[k], batch[j] = batch[j], batch[k]
        sentences += batch
    text, starts = "", []
    for n, sentence in enumerate(sentences):
        text += ("\n\n" if paragraphs and n % 3 == 2 else " ") if n else ""
        starts.append(len(text))
        text += sentence
    return text, starts


_CORPORA = (_corpus(False), _corpus(True))


def prose(u: Draw, lead: str, length: int, paragraphs: bool) -> str:
    """``lead`` followed by whole filler sentences until about ``length`` characters."""
    text, starts = _CORPORA[paragraphs]
    need = length - len(lead)
    if need <= 0:
        return lead
    first = starts[int(u() * (len(starts) // 2))]
    end = bisect.bisect_left(starts, first + need)
    stop = starts[end] if end < len(starts) else len(text)
    return lead + " " + text[first:stop].rstrip()
