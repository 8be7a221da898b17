"""OS package versions and placement: hand-checked orderings, judged again by dpkg and rpm.

The tables below are the oracle: each pair was ordered by hand from the scheme's own
rules (Debian Policy 5.6.12 for dpkg, rpmvercmp for rpm, apk-tools' version tokens for
apk, Maven's ComparableVersion after MNG-6964) with the reason beside it. The dpkg and
rpm rows are also put to the real ``dpkg --compare-versions`` and ``rpm.vercmp``, so a
wrong hand answer fails too; apk has no comparer on Debian, so its rows stand alone.
Nothing here calls the code under test to compute an expected answer.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from stella.adapters.trivy.versions import Scheme, version_key
from stella.findings.advisories import advisory_affected
from stella.findings.components import sbom_components
from stella.findings.match import match_partition
from stella.findings.purls import parse_purl
from stella.ledger.ingest import to_record
from stella.model import LedgerRecord
from tests.support import require_tool

# (a, "<" | "=" | ">", b, why)
DPKG = [
    ("1:1.0-1", ">", "2.0-1", "an epoch outranks the upstream version"),
    ("1.2.13.dfsg-1", "<", "1:1.2.13.dfsg-1", "no epoch is epoch 0"),
    ("0:1.0-1", "=", "1.0-1", "epoch 0 is the same as none"),
    ("1.0~rc1-1", "<", "1.0-1", "a tilde sorts before the end of the part"),
    ("1.0~~a-1", "<", "1.0~a-1", "two tildes before one"),
    ("3.0.11-1~deb12u2", "<", "3.0.11-1", "a stable update (~deb12u2) precedes the unstable revision"),
    ("3.0.11-1~deb12u1", "<", "3.0.11-1~deb12u2", "later stable update"),
    ("5.2.15-2+b2", ">", "5.2.15-2", "a binNMU (+b2) follows its source revision"),
    ("1.0-1", "<", "1.0-1.1", "a longer revision with more digits is newer"),
    ("1.0a-1", ">", "1.0-1", "letters sort after the end of the part"),
    ("1.0+dfsg-1", ">", "1.0-1", "'+' sorts after the end of the part"),
    ("2.30-10", ">", "2.30-9", "revision numbers compare numerically"),
    ("1.0-0ubuntu1", "<", "1.0-1", "Ubuntu's 0ubuntu revision precedes Debian's -1"),
]
RPM = [
    ("1:3.0.7-24.el9", ">", "3.0.8-1.el9", "an epoch outranks the version"),
    ("3.0.7-25.el9_3", ">", "3.0.7-24.el9", "release 25 > 24"),
    ("7.76.1-26.el9_3.10", ">", "7.76.1-26.el9_3.2", "release segments compare numerically"),
    ("7.76.1-26.el9", "<", "7.76.1-26.el9_3", "the release with more segments is newer"),
    ("1.0~rc1-1", "<", "1.0-1", "a tilde sorts before anything"),
    ("1.0^git1-1", ">", "1.0-1", "a caret sorts after the end, before anything else"),
    ("1.0^git1-1", "<", "1.0.1-1", "... but before a further segment"),
    ("1.0a-1", "<", "1.0.1-1", "a letter segment is older than a number segment"),
    ("2.02-1", "=", "2.2-1", "leading zeros do not count"),
    ("1.0-1", "<", "1.0-1.el9", "more release segments"),
]
APK = [
    ("1.36.1-r15", ">", "1.36.1-r2", "revisions compare numerically"),
    ("3.1.10-r0", ">", "3.1.4-r5", "version parts compare numerically"),
    ("1.2.3_rc1-r0", "<", "1.2.3-r0", "_rc is a pre-release suffix"),
    ("1.2.3_alpha-r0", "<", "1.2.3_beta-r0", "_alpha < _beta < _pre < _rc"),
    ("1.2.3_pre2-r0", "<", "1.2.3_rc1-r0", "_pre before _rc"),
    ("1.2.3_p1-r0", ">", "1.2.3-r0", "_p is a post-release suffix"),
    ("1.2.4_git20230717-r4", ">", "1.2.4-r4", "_git is a post-release suffix (univers rejects it)"),
    ("1.2.4_git20230717-r4", "<", "1.2.5-r0", "... but before the next release"),
    ("1.2.4_svn1-r0", "<", "1.2.4_git1-r0", "_cvs < _svn < _git < _hg < _p"),
    ("1.0a-r0", ">", "1.0-r0", "a letter after the last digit is newer"),
    ("1.0-r1", ">", "1.0", "a revision follows no revision"),
    ("1.01-r0", "<", "1.1-r0", "leading zeros after a dot sort as fractions (apk's rule)"),
    ("2.0-r0", "=", "2.0-r0", "equal"),
]
MAVEN = [
    ("3.24.1-GA", "<", "3.24.1-GA.1", "MNG-6964: the whole sub-list [ga, 1] is compared with null"),
    ("3.24.1-GA", "=", "3.24.1", "ga is an alias of the release"),
    ("1.0-rc1", "<", "1.0", "rc is a pre-release qualifier"),
    ("1.0-sp1", ">", "1.0", "sp follows the release"),
    ("1.0", "=", "1.0.0", "trailing zeros are insignificant"),
    ("1-1", "<", "1.1", "a sub-list is older than a number"),
]


def _ordered(scheme: Scheme, a: str, b: str) -> str:
    ka, kb = version_key(scheme, a), version_key(scheme, b)
    assert ka is not None and kb is not None, (a, b)
    return "<" if ka < kb else ">" if kb < ka else "="


@pytest.mark.parametrize(
    ("scheme", "rows"), [(Scheme.DPKG, DPKG), (Scheme.RPM, RPM), (Scheme.APK, APK), (Scheme.MAVEN, MAVEN)],
    ids=["dpkg", "rpm", "apk", "maven"],
)  # fmt: skip
def test_version_key_orders_as_the_hand_checked_table(
    scheme: Scheme, rows: list[tuple[str, str, str, str]]
) -> None:
    wrong = [f"{a} {_ordered(scheme, a, b)} {b}, expected {op}: {why}" for a, op, b, why in rows
             if _ordered(scheme, a, b) != op]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_dpkg_table_is_what_dpkg_says() -> None:
    dpkg = require_tool("dpkg")
    ops = {"<": "lt", "=": "eq", ">": "gt"}
    for a, op, b, why in DPKG:
        done = subprocess.run([dpkg, "--compare-versions", a, ops[op], b], check=False)
        assert done.returncode == 0, f"dpkg disagrees: {a} {op} {b} ({why})"


def test_the_rpm_table_is_what_rpm_says() -> None:
    rpm = require_tool("rpm")
    script = "".join(f'print(rpm.vercmp("{a}", "{b}")) print(" ") ' for a, _op, b, _why in RPM)
    done = subprocess.run([rpm, "--eval", f"%{{lua: {script}}}"], capture_output=True, text=True, check=True)
    got = [int(x) for x in done.stdout.split()]
    expected = [{"<": -1, "=": 0, ">": 1}[op] for _a, op, _b, _why in RPM]
    assert got == expected, list(zip(RPM, got, strict=True))


def test_unparsable_apk_versions_match_nothing() -> None:
    assert version_key(Scheme.APK, "1.0_foo") is None  # not a suffix apk knows
    assert version_key(Scheme.APK, "1.0-") is None  # a dash with no revision


# --- placement: which bucket an OS component is looked up in ------------------------------------


@pytest.mark.parametrize(
    ("purl", "system", "key", "ecosystem"),
    [
        ("pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12.5", None, ("debian 12", "openssl"), "Debian"),
        ("pkg:deb/ubuntu/curl@7.81.0-1ubuntu1.15?distro=ubuntu-22.04", None, ("ubuntu 22.04", "curl"), "Ubuntu"),
        ("pkg:apk/alpine/musl@1.2.4_git20230717-r4?distro=3.19.1", None, ("alpine 3.19", "musl"), "Alpine"),
        ("pkg:rpm/rocky/bash@5.1.8-6.el9_1?distro=rocky-9.3", None, ("rocky 9", "bash"), "Rocky Linux"),
        ("pkg:rpm/almalinux/curl@7.76.1-26.el9_3.2?distro=almalinux-9.3", None, ("alma 9", "curl"), "AlmaLinux"),
        ("pkg:apk/wolfi/glibc@2.38-r5", ("wolfi", "20230201"), ("wolfi", "glibc"), "Wolfi"),
        # the SBOM's operating-system component wins over the purl, as in Trivy
        ("pkg:deb/debian/zlib@1.2.13?distro=debian-11", ("debian", "12.5"), ("debian 12", "zlib"), "Debian"),
        # no release anywhere, a codename, or Red Hat (no bucket): not placed
        ("pkg:deb/debian/zlib@1.2.13", None, ("", "zlib"), "Debian"),
        ("pkg:deb/debian/zlib@1.2.13?distro=bookworm", None, ("", "zlib"), "Debian"),
        ("pkg:rpm/redhat/openssl@3.0.7-24.el9?distro=rhel-9.3", ("rhel", "9.3"), ("", "openssl"), "RPM"),
    ],
)  # fmt: skip
def test_os_purls_are_keyed_by_the_release_bucket(
    purl: str, system: tuple[str, str] | None, key: tuple[str, str], ecosystem: str
) -> None:
    ref = parse_purl(purl, system)
    assert ref is not None
    assert (ref.key, ref.ecosystem, ref.matchable) == (key, ecosystem, bool(key[0]))


def test_rpm_epoch_qualifier_is_part_of_the_version() -> None:
    ref = parse_purl("pkg:rpm/rocky/openssl@3.0.7-24.el9?arch=x86_64&epoch=1&distro=rocky-9.3")
    assert ref is not None and ref.version == "1:3.0.7-24.el9"
    assert ref.identity == ("rpm/rocky", "openssl")


def _record(doc: dict[str, object]) -> LedgerRecord:
    return to_record(json.dumps(doc).encode(), tenant="acme", source="t", ingested_at="2026-06-01T00:00:00Z")


def test_os_components_meet_their_release_advisories_only() -> None:
    """Debian 12 advisories reach a Debian 12 SBOM's packages, not Debian 11's; epochs and tildes count."""
    sbom = {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": "urn:uuid:dddddddd-0000-4000-8000-000000000012",
        "metadata": {"component": {"type": "container", "name": "app", "bom-ref": "app"}},
        "components": [
            {"type": "operating-system", "name": "debian", "version": "12.5", "bom-ref": "os"},
            {"type": "library", "name": "openssl", "version": "3.0.11-1~deb12u2", "bom-ref": "a",
             "purl": "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12.5"},
            {"type": "library", "name": "zlib", "version": "1:1.2.13.dfsg-1", "bom-ref": "b",
             "purl": "pkg:deb/debian/zlib@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12.5"},
            # a binary of another source, as Trivy's SBOMs state it: matched by source name and version
            {"type": "library", "name": "bsdutils", "version": "1:2.38.1-5+deb12u1", "bom-ref": "c",
             "purl": "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bdeb12u1?arch=amd64&distro=debian-12.5",
             "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "util-linux"},
                            {"name": "aquasecurity:trivy:SrcVersion", "value": "2.38.1"},
                            {"name": "aquasecurity:trivy:SrcRelease", "value": "5+deb12u1"}]},
        ],
    }  # fmt: skip

    def advisory(vid: str, eco: str, name: str, fixed: str) -> dict[str, object]:
        events = [{"introduced": "0"}, {"fixed": fixed}]
        return {"id": vid, "modified": "2026-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": eco, "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}]}  # fmt: skip

    advisories = [
        advisory("DSA-1", "Debian:12", "openssl", "3.0.13-1~deb12u1"),  # later update: affected
        advisory("DSA-2", "Debian:12", "openssl", "3.0.11-1~deb12u1"),  # earlier update: fixed
        advisory("DSA-3", "Debian:12", "zlib", "1.2.99-1"),  # epoch 0 < epoch 1: fixed
        advisory("DSA-4", "Debian:12", "zlib", "1:1.2.13.dfsg-1+deb12u1"),  # affected
        advisory("DSA-5", "Debian:11", "openssl", "9.9-1"),  # another release: never
        advisory("DSA-6", "Debian:12", "util-linux", "1:2.38.1-5+deb12u1"),  # source has no epoch: affected
        advisory("DSA-7", "Debian:12", "bsdutils", "9:9-1"),  # binary names are not looked up: never
    ]
    components = sbom_components(_record(sbom))
    affected = [a for doc in advisories for a in advisory_affected(_record(doc))]
    found = {
        (m.component.name, m.component.version, m.vulnerability)
        for m in match_partition(components, affected)
    }
    assert found == {
        ("openssl", "3.0.11-1~deb12u2", "DSA-1"),
        ("zlib", "1:1.2.13.dfsg-1", "DSA-4"),
        ("bsdutils", "1:2.38.1-5+deb12u1", "DSA-6"),  # reported with the installed binary's version
    }


def test_trivy_db_sweeps_os_events_in_the_schemes_order() -> None:
    """The trivy:db adapter orders OS events with the same keys: a fix listed before "introduced" still counts."""
    from stella.adapters.trivy.osv import translate_osv

    doc = {"id": "DSA-8", "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"fixed": "1:1.2.13.dfsg-1+deb12u1"}, {"introduced": "0"}]}]}]}  # fmt: skip
    out = translate_osv(doc, upstream_id="DSA-8")
    assert not out.untranslated
    values = [e.value for e in out.entries if e.bucket == ("debian 12", "zlib")]
    assert values == [{"FixedVersion": "1:1.2.13.dfsg-1+deb12u1"}]


def test_spdx_operating_system_package_places_os_packages() -> None:
    """SPDX: the package whose primaryPackagePurpose is OPERATING-SYSTEM names the release."""

    def package(spdx_id: str, name: str, version: str, purl: str | None, purpose: str) -> dict[str, object]:
        refs = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}]
        return {"SPDXID": spdx_id, "name": name, "versionInfo": version, "downloadLocation": "NOASSERTION",
                "primaryPackagePurpose": purpose, **({"externalRefs": refs} if purl else {})}  # fmt: skip

    doc = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "image",
        "documentNamespace": "https://example.com/spdx/image-1",
        "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            package("SPDXRef-os", "alpine", "3.19.1", None, "OPERATING-SYSTEM"),
            package("SPDXRef-musl", "musl", "1.2.4_git20230717-r4", "pkg:apk/alpine/musl@1.2.4_git20230717-r4", "LIBRARY"),
        ],
    }  # fmt: skip
    (comp,) = sbom_components(_record(doc))
    assert (comp.ref.key, comp.ref.ecosystem, comp.version) == (
        ("alpine 3.19", "musl"),
        "Alpine",
        "1.2.4_git20230717-r4",
    )
