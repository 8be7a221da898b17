"""OSV advisories in the styles of the databases they come from.

One function per upstream database (PyPA, Bitnami, OSS-Fuzz, Go, RustSec, PSF, GitHub,
Debian/Alpine), each keeping that database's field set and habits -- which fields are
present, how timestamps are spelled, ECOSYSTEM vs SEMVER vs GIT ranges, ``versions``
lists, CVSS on the record or on the package -- with lengths drawn from tables measured
on ``../shared/data`` (values at min, p10, p25, median, p75, p90, p95, p99, max).
"""

from __future__ import annotations

from collections.abc import Callable

from stella.ledger.synthetic._packages import ECOSYSTEMS, WORDS, Ecosystem, events, git_events, package
from stella.ledger.synthetic._text import (
    Draw,
    arr,
    cve,
    cvss,
    cvss4,
    day_in,
    enc,
    ghsa,
    later,
    obj,
    pick,
    popular,
    prose,
    quant,
    sha1_like,
    stamp,
    strs,
    table_draw,
    weighted,
    years,
)

__all__ = ["WEAKNESSES", "osv"]

_PYPA_DETAILS = (29, 125, 202, 352, 619, 857, 1031, 1490, 3690)
_BITNAMI_DETAILS = (27, 130, 186, 322, 576, 963, 1130, 1402, 2811)
_RUST_DETAILS = (38, 157, 251, 376, 551, 851, 1314, 2335, 3741)
_GO_DETAILS = (29, 62, 76, 100, 177, 341, 509, 962, 2117)
_GHSA_DETAILS = (120, 180, 260, 480, 900, 1500, 2000, 3000, 5000)
_PSF_DETAILS = (48, 164, 212, 309, 393, 661, 736, 1187, 1187)
_PYPA_REFS = (1, 2, 2, 3, 5, 8, 10, 15, 32)
_BITNAMI_REFS = (1, 2, 3, 4, 7, 12, 16, 30, 60)
_GO_REFS = (1, 2, 3, 4, 5, 7, 8, 11, 21)
_GHSA_REFS = (3, 4, 5, 6, 7, 9, 10, 14, 24)
_PYPA_SPANS = (1, 1, 1, 1, 1, 2, 4, 5, 12)
_BITNAMI_SPANS = (1, 1, 1, 3, 4, 5, 6, 8, 16)
_GO_SPANS = (1, 1, 1, 1, 1, 2, 3, 4, 6)
_MULTI = (1, 1, 1, 1, 1, 1, 2, 4, 8)  # affected[] entries in Go and GitHub records
_PYPA_KINDS = weighted(
    (("WEB", 37), ("ADVISORY", 34), ("FIX", 17), ("REPORT", 8), ("EVIDENCE", 2), ("ARTICLE", 2))
)
_GO_KINDS = weighted((("WEB", 37), ("ADVISORY", 31), ("FIX", 26), ("REPORT", 6)))
_GHSA_KINDS = weighted((("WEB", 70), ("ADVISORY", 16), ("PACKAGE", 14)))

WEAKNESSES = (
    ("Cross-site scripting", "CWE-79"), ("SQL injection", "CWE-89"), ("Path traversal", "CWE-22"),
    ("Denial of service", "CWE-400"), ("Uncontrolled recursion", "CWE-674"), ("Out-of-bounds read", "CWE-125"),
    ("Out-of-bounds write", "CWE-787"), ("Use after free", "CWE-416"), ("Improper certificate validation", "CWE-295"),
    ("Server-side request forgery", "CWE-918"), ("Open redirect", "CWE-601"), ("Command injection", "CWE-78"),
    ("Deserialization of untrusted data", "CWE-502"), ("Regular expression denial of service", "CWE-1333"),
    ("Information exposure", "CWE-200"), ("Cross-site request forgery", "CWE-352"), ("Integer overflow", "CWE-190"),
    ("XML external entity injection", "CWE-611"), ("Improper authentication", "CWE-287"),
    ("Prototype pollution", "CWE-1321"), ("HTTP request smuggling", "CWE-444"), ("Missing authorization", "CWE-862"),
)  # fmt: skip
_ATTACKERS = ("remote attackers", "remote authenticated users", "local users", "unauthenticated attackers",
              "attackers with network access", "malicious websites", "context-dependent attackers")  # fmt: skip
_IMPACTS = ("execute arbitrary code", "cause a denial of service (memory consumption)", "read arbitrary files",
            "inject arbitrary web script or HTML", "bypass intended access restrictions", "obtain sensitive information",
            "cause a denial of service (infinite loop)", "hijack the authentication of users", "write arbitrary files",
            "cause a denial of service (crash)", "escalate privileges", "spoof trusted certificates")  # fmt: skip
_VECTORS = ("a crafted request", "a crafted archive", "a long header value", "a malformed document",
            "specially crafted input", "a crafted URL", "a deeply nested payload", "a crafted certificate chain",
            "the filename parameter", "crafted query parameters", "a malicious template", "an oversized upload")  # fmt: skip
_RUST_CATEGORIES = (
    "memory-corruption",
    "denial-of-service",
    "thread-safety",
    "crypto-failure",
    "memory-exposure",
)
_SYMBOLS = tuple(
    f"{verb}{noun}"
    for verb in ("Parse", "Read", "Decode", "New", "Serve", "Handle", "Verify", "Open", "Write", "Dial")
    for noun in ("Request", "Header", "Config", "Token", "Archive", "Message", "Conn", "Frame", "Reader")
)
_CRASHES = ("Heap-buffer-overflow READ", "Heap-buffer-overflow WRITE", "Stack-buffer-overflow READ",
            "Heap-use-after-free READ", "Null-dereference READ", "Index-out-of-bounds", "Global-buffer-overflow READ",
            "Use-of-uninitialized-value", "Segv on unknown address", "Memory leak")  # fmt: skip


def _details(u: Draw, table: tuple[int, ...], name: str, fixed: str, paragraphs: bool) -> tuple[str, str]:
    """(summary, details): a lead sentence naming the package and fix, then filler prose."""
    weakness = pick(u, WEAKNESSES)[0]
    lead = (
        f"{weakness} in {name} before {fixed} allows {pick(u, _ATTACKERS)} to "
        f"{pick(u, _IMPACTS)} via {pick(u, _VECTORS)}."
    )
    return f"{weakness} in {name}", prose(u, lead, quant(u, table), paragraphs)


def _ref(kind: str, url: str) -> str:
    return f'{{"type":"{kind}","url":"{url}"}}'


def _url_pool(name: str, make: Callable[[Draw, int], str]) -> tuple[str, ...]:
    """2048 URLs of one shape, built once, so a reference costs two draws and a concatenation."""
    draw = table_draw(f"urls:{name}")
    return tuple(make(draw, int(draw() * 200000)) for _ in range(2048))


_ADVISORY_URLS = _url_pool(
    "advisory",
    lambda u, n: (
        f"https://github.com/advisories/{ghsa(u)}" if n % 4 == 0
        else f"https://security.gentoo.org/glsa/{2010 + n % 16}{n % 12 + 1:02d}-{n % 40:02d}" if n % 4 == 1
        else f"https://access.redhat.com/errata/RHSA-{2010 + n % 16}:{n % 9999:04d}" if n % 4 == 2
        else f"https://ubuntu.com/security/notices/USN-{n % 7000}-{1 + n % 3}"
    ),
)  # fmt: skip
_WEB_URLS = _url_pool(
    "web",
    lambda u, n: (
        f"https://lists.debian.org/debian-lts-announce/{2014 + n % 12}/{n % 12 + 1:02d}/msg{n % 99:05d}.html" if n % 4 == 0
        else f"https://www.openwall.com/lists/oss-security/{2014 + n % 12}/{n % 12 + 1:02d}/{n % 28 + 1:02d}/{n % 9}" if n % 4 == 1
        else f"https://security.netapp.com/advisory/ntap-{2016 + n % 10}{n % 12 + 1:02d}{n % 28 + 1:02d}-{n % 9999:04d}/" if n % 4 == 2
        else f"https://huntr.dev/bounties/{sha1_like(u)[:32]}"
    ),
)  # fmt: skip
_FIX_PATHS = _url_pool("fix", lambda u, n: f"/commit/{sha1_like(u)}" if n % 4 else f"/pull/{n % 9000}")
_REPORT_PATHS = _url_pool("report", lambda u, n: f"/issues/{n % 9000}")
_BUGZILLA_URLS = _url_pool("bugzilla", lambda u, n: f"https://bugzilla.redhat.com/show_bug.cgi?id={n * 50}")
_TAG_PATHS = _url_pool("tags", lambda u, n: f"/releases/tag/v{n % 20}.{n % 7}.{n % 11}")


def _references(u: Draw, count: int, kinds: tuple[str, ...], repo: str, cve_id: str) -> str:
    out = []
    for _ in range(count):
        kind = pick(u, kinds)
        x = u()
        if kind == "ADVISORY":
            url = f"https://nvd.nist.gov/vuln/detail/{cve_id}" if x < 0.4 else _ADVISORY_URLS[int(x * 2048)]
        elif kind == "FIX":
            url = repo + _FIX_PATHS[int(x * 2048)]
        elif kind == "REPORT":
            url = repo + _REPORT_PATHS[int(x * 2048)] if x < 0.6 else _BUGZILLA_URLS[int(x * 2048)]
        elif kind == "PACKAGE":
            url = repo
        else:  # WEB, EVIDENCE, ARTICLE
            url = repo + _TAG_PATHS[int(x * 2048)] if x < 0.15 else _WEB_URLS[int(x * 2048)]
        out.append(f'{{"type":"{kind}","url":"{url}"}}')
    return arr(out)


def _dates(u: Draw, first_year: int) -> tuple[int, int, int]:
    """(year, published day, modified day)."""
    year = pick(u, years(first_year))
    day = day_in(u, year)
    return year, day, later(u, day)


def _pypa(u: Draw, i: int, eco: Ecosystem) -> str:
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2005)
    spans, covered, fixed = events(u, p.history, quant(u, _PYPA_SPANS), "0")
    ranges = f'{{"events":[{",".join(spans)}],"type":"ECOSYSTEM"}}'
    if u() < 0.44:
        ranges = f'{{"events":[{git_events(u)}],"repo":"{p.repo}","type":"GIT"}},{ranges}'
    versions = f',"versions":{strs(sorted(covered))}' if u() < 0.96 else ""
    cve_id = cve(u, year)
    when = f'"{stamp(u, modified, "us")}"'
    doc = {
        "affected": f'[{{"package":{p.json},"ranges":[{ranges}]{versions}}}]',
        "aliases": strs([cve_id, ghsa(u)][: 2 - (u() < 0.2)]),
        "details": enc(_details(u, _PYPA_DETAILS, p.name, fixed, False)[1]),
        "id": f'"SYN-PYSEC-{year}-{i:07d}"',
        "modified": when,
        "published": f'"{stamp(u, published)}"',
        "references": _references(u, quant(u, _PYPA_REFS), _PYPA_KINDS, p.repo, cve_id),
    }
    if u() < 0.26:
        doc["severity"] = f'[{{"score":"{cvss(u)[0]}","type":"CVSS_V3"}}]'
    if u() < 0.085:
        doc["withdrawn"] = when
    return obj(doc)


def _bitnami(u: Draw, i: int, eco: Ecosystem) -> str:
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2008)
    spans, _, fixed = events(u, p.history, quant(u, _BITNAMI_SPANS), "0")
    ranges = f'[{{"events":[{",".join(spans)}],"type":"SEMVER"}}]'
    vector, label = cvss(u)
    summary, details = _details(u, _BITNAMI_DETAILS, p.name, fixed, False)
    cve_id = cve(u, year)
    doc = {
        "affected": f'[{{"package":{p.json},"ranges":{ranges},'
        f'"severity":[{{"score":"{vector}","type":"CVSS_V3"}}]}}]',
        "aliases": f'["{cve_id}"]',
        "database_specific": f'{{"cpes":["cpe:2.3:a:{p.name}:{p.name}:*:*:*:*:*:*:*:*"],"severity":"{label.title()}"}}',
        "details": enc(details),
        "id": f'"SYN-BIT-{year}-{i:07d}"',
        "modified": f'"{stamp(u, modified, "ms")}"',
        "published": f'"{stamp(u, published, "ms")}"',
        "references": _references(u, quant(u, _BITNAMI_REFS), ("WEB",), p.repo, cve_id),
        "schema_version": '"1.5.0"',
    }
    if u() < 0.37:
        doc["summary"] = enc(summary)
    return obj(doc)


def _go(u: Draw, i: int, eco: Ecosystem) -> str:
    """Go vulndb: SEMVER ranges without ``v``, no purl, imported symbols per package."""
    year, published, modified = _dates(u, 2019)
    names = dict.fromkeys([popular(u, eco.names) for _ in range(quant(u, _MULTI))])
    entries = []
    fixed = ""
    for name in names:
        p = package(eco.name, name)
        spans, _, first_fix = events(u, p.history, quant(u, _GO_SPANS), "0")
        fixed = fixed or first_fix
        symbols = strs(sorted({pick(u, _SYMBOLS) for _ in range(1 + int(u() * u() * 10))}))
        path = f"{pick(u, ('net', 'crypto', 'encoding'))}/{pick(u, WORDS)}" if "." not in name else name
        entries.append(
            f'{{"ecosystem_specific":{{"imports":[{{"path":"{path}","symbols":{symbols}}}]}},'
            f'"package":{p.json_bare},"ranges":[{{"events":[{",".join(spans)}],"type":"SEMVER"}}]}}'
        )
    first = package(eco.name, next(iter(names)))
    summary, details = _details(u, _GO_DETAILS, first.name, fixed, True)
    cve_id = cve(u, year)
    go_id = f"SYN-GO-{year}-{i:07d}"
    doc = {
        "affected": arr(entries),
        "aliases": strs([cve_id, ghsa(u)][: 2 - (u() < 0.3)]),
        "database_specific": f'{{"review_status":"REVIEWED","url":"https://pkg.go.dev/vuln/{go_id}"}}',
        "details": enc(details),
        "id": f'"{go_id}"',
        "modified": f'"{stamp(u, modified)}"',
        "published": f'"{stamp(u, published)}"',
        "references": _references(u, quant(u, _GO_REFS), _GO_KINDS, first.repo, cve_id),
        "schema_version": '"1.3.1"',
        "summary": enc(summary),
    }
    if u() < 0.22:
        doc["credits"] = f'[{{"name":"{pick(u, WORDS).title()} Security Team"}}]'
    return obj(doc)


def _rustsec(u: Draw, i: int, eco: Ecosystem) -> str:
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2016)
    spans, _, fixed = events(u, p.history, quant(u, _GO_SPANS), "0.0.0-0")
    ranges = f'[{{"events":[{",".join(spans)}],"type":"SEMVER"}}]'
    summary, details = _details(u, _RUST_DETAILS, p.name, fixed, True)
    vector = cvss(u)[0] if u() < 0.52 else ""
    rust_id = f"SYN-RUSTSEC-{year}-{i:07d}"
    cve_id = cve(u, year)
    when = f'"{stamp(u, modified)}"'
    doc = {
        "affected": (
            f'[{{"database_specific":{{"categories":["{pick(u, _RUST_CATEGORIES)}"],'
            f'"cvss":{f"{chr(34)}{vector}{chr(34)}" if vector else "null"},"informational":null}},'
            f'"ecosystem_specific":{{"affected_functions":null,"affects":{{"arch":[],"functions":[],"os":[]}}}},'
            f'"package":{p.json},"ranges":{ranges},"versions":[]}}]'
        ),
        "aliases": strs([cve_id, ghsa(u)][: int(u() * 3)]),
        "database_specific": '{"license":"CC0-1.0"}',
        "details": enc(details),
        "id": f'"{rust_id}"',
        "modified": when,
        "published": f'"{stamp(u, published)}"',
        "references": arr(
            [
                _ref("PACKAGE", f"https://crates.io/crates/{p.name}"),
                _ref("ADVISORY", f"https://rustsec.org/advisories/{rust_id}.html"),
                _ref("REPORT", f"{p.repo}/issues/{1 + int(u() * 900)}"),
            ]
        ),  # fmt: skip
        "related": "[]",
        "severity": f'[{{"score":"{vector}","type":"CVSS_V3"}}]' if vector else "[]",
        "summary": enc(summary),
    }
    if u() < 0.016:
        doc["withdrawn"] = when
    return obj(doc)


def _ossfuzz(u: Draw, i: int, eco: Ecosystem) -> str:
    """OSS-Fuzz: a crash report, one GIT range between commits, sometimes affected tags."""
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2016)
    crash = pick(u, _CRASHES)
    frames = [f"{pick(u, WORDS)}_{pick(u, _SYMBOLS)}" for _ in range(3)]
    issue = 10000 + int(u() * 60000)
    report = f"https://bugs.chromium.org/p/oss-fuzz/issues/detail?id={issue}"
    details = (
        f"OSS-Fuzz report: {report}\n\n```\nCrash type: {crash} {1 << int(u() * 4)}\nCrash state:\n"
        + "\n".join(frames)
        + "\n```\n"
    )
    tags = strs(p.history[-1 - int(u() * 8) :]) if u() < 0.4 else "[]"
    when = f'"{stamp(u, modified, "us")}"'
    doc = {
        "affected": (
            f'[{{"ecosystem_specific":{{"severity":"{pick(u, ("HIGH", "MEDIUM", "MEDIUM", "LOW"))}"}},'
            f'"package":{p.json_bare},"ranges":[{{"events":[{{"introduced":"{sha1_like(u)}"}},'
            f'{{"fixed":"{sha1_like(u)}"}}],"repo":"{p.repo}.git","type":"GIT"}}],"versions":{tags}}}]'
        ),
        "details": enc(details),
        "id": f'"SYN-OSV-{year}-{i:07d}"',
        "modified": when,
        "published": f'"{stamp(u, published, "us")}"',
        "references": f"[{_ref('REPORT', report)}]",
        "summary": enc(f"{crash.split()[0]} in {frames[0]}"),
    }
    if u() < 0.003:
        doc["withdrawn"] = when
    return obj(doc)


def _psf(u: Draw, i: int, eco: Ecosystem) -> str:
    """CPython advisories: GIT ranges on one repository and no package at all."""
    year, published, modified = _dates(u, 2007)
    summary, details = _details(u, _PSF_DETAILS, "CPython", f"3.{int(u() * 13)}", False)
    cve_id = cve(u, year)
    doc = {
        "affected": f'[{{"ranges":[{{"events":[{git_events(u)}],"repo":"https://github.com/python/cpython","type":"GIT"}}]}}]',
        "aliases": strs([cve_id][: int(u() < 0.85)]),
        "database_specific": '{"cwe_ids":[]}',
        "details": enc(details),
        "id": f'"SYN-PSF-{year}-{i:07d}"',
        "modified": f'"{stamp(u, modified)}"',
        "published": f'"{stamp(u, published)}"',
        "references": f"[{_ref('REPORT', f'https://bugs.python.org/issue{10000 + int(u() * 30000)}')}]",
        "schema_version": '"1.5.0"',
        "summary": enc(summary),
    }
    return obj(doc)


def _github(u: Draw, i: int, eco: Ecosystem) -> str:
    """GitHub-reviewed advisories: one ECOSYSTEM span per affected entry, purl on half."""
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2017)
    package_json = p.json if u() < 0.5 else p.json_bare
    spans, covered, fixed = events(u, p.history, quant(u, _MULTI), "0")
    note = (
        f'"database_specific":{{"last_known_affected_version_range":"<= {covered[-1]}"}},'
        if covered and u() < 0.4
        else ""
    )
    entries = [
        f'{{{note}"package":{package_json},"ranges":[{{"events":[{span}],"type":"ECOSYSTEM"}}]}}'
        for span in spans
    ]
    weakness, cwe = pick(u, WEAKNESSES)
    _, details = _details(u, _GHSA_DETAILS, p.name, fixed, True)
    vector, label = cvss(u)
    severity = f'{{"score":"{vector}","type":"CVSS_V3"}}'
    if u() < 0.2:
        severity += f',{{"score":"{cvss4(u)}","type":"CVSS_V4"}}'
    cve_id = cve(u, year)
    doc = {
        "affected": arr(entries),
        "aliases": f'["{cve_id}"]',
        "database_specific": (
            f'{{"cwe_ids":["{cwe}"],"github_reviewed":true,"github_reviewed_at":"{stamp(u, later(u, published))}",'
            f'"nvd_published_at":"{stamp(u, published)}","severity":"{label.replace("MEDIUM", "MODERATE")}"}}'
        ),
        "details": enc(details),
        "id": f'"SYN-GHSA-{year}-{i:07d}"',
        "modified": f'"{stamp(u, modified)}"',
        "published": f'"{stamp(u, published)}"',
        "references": _references(u, quant(u, _GHSA_REFS), _GHSA_KINDS, p.repo, cve_id),
        "schema_version": '"1.4.0"',
        "severity": f"[{severity}]",
        "summary": enc(f"{p.name} vulnerable to {weakness[0].lower()}{weakness[1:]}"),
    }
    return obj(doc)


def _distro(u: Draw, i: int, eco: Ecosystem) -> str:
    """Debian and Alpine security-tracker records: one source package, ECOSYSTEM range."""
    p = package(eco.name, popular(u, eco.names))
    year, published, modified = _dates(u, 2014)
    spans, _, fixed = events(u, p.history, 1, "0")
    cve_id = cve(u, year)
    debian = eco.name.startswith("Debian")
    tracker = (
        f"https://security-tracker.debian.org/tracker/{cve_id}"
        if debian
        else f"https://security.alpinelinux.org/vuln/{cve_id}"
    )
    doc = {
        "affected": f'[{{"package":{p.json},"ranges":[{{"events":[{",".join(spans)}],"type":"ECOSYSTEM"}}]}}]',
        "aliases": f'["{cve_id}"]',
        "details": enc(_details(u, _BITNAMI_DETAILS, p.name, fixed, False)[1]),
        "id": f'"SYN-{"DEBIAN" if debian else "ALPINE"}-{year}-{i:07d}"',
        "modified": f'"{stamp(u, modified)}"',
        "published": f'"{stamp(u, published)}"',
        "references": f"[{_ref('ADVISORY', tracker)},{_ref('WEB', f'https://nvd.nist.gov/vuln/detail/{cve_id}')}]",
        "schema_version": '"1.5.0"',
    }
    return obj(doc)


_Style = Callable[[Draw, int, Ecosystem], str]
# Records per ecosystem, per mille: the public data's proportions (PyPI, Bitnami, OSS-Fuzz,
# Go, crates.io, CPython), plus the other ecosystems Trivy reads, a little each.
_TABLE: tuple[tuple[_Style, Ecosystem], ...] = weighted(
    ((style, ECOSYSTEMS[eco]), weight)
    for style, eco, weight in (
        (_pypa, "PyPI", 320), (_bitnami, "Bitnami", 265), (_ossfuzz, "OSS-Fuzz", 115), (_go, "Go", 115),
        (_rustsec, "crates.io", 45), (_psf, "PyPI", 8), (_github, "npm", 40), (_github, "Maven", 35),
        (_github, "Packagist", 10), (_github, "RubyGems", 8), (_github, "NuGet", 8), (_github, "Pub", 3),
        (_github, "Hex", 3), (_github, "SwiftURL", 1), (_distro, "Debian:12", 12), (_distro, "Alpine:v3.18", 12),
    )
)  # fmt: skip


def osv(u: Draw, i: int) -> str:
    """Document ``i`` as an OSV record of a database drawn by the proportions above."""
    style, eco = pick(u, _TABLE)
    return style(u, i, eco)
