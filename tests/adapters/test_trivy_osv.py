"""Unit tests of the OSV → Trivy DB adapter: ecosystems, range kinds, ids, details, reasons."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from stella.adapters.trivy.ecosystems import place
from stella.adapters.trivy.osv import AdapterOutput, TrivyEntry, merge_value, translate_osv
from stella.adapters.trivy.versions import (
    Interval,
    Scheme,
    VersionProblem,
    intervals_from_events,
    render_interval,
    render_version,
)
from stella.canonical import dumps

# --- helpers ---------------------------------------------------------------------------


def osv(
    ecosystem: str = "PyPI",
    name: str = "requests",
    *,
    events: list[dict[str, str]] | None = None,
    range_type: str = "ECOSYSTEM",
    versions: list[str] | None = None,
    record_id: str = "PYSEC-2018-28",
    aliases: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {"id": record_id, "aliases": aliases or [], "affected": [affected], **extra}


def run(doc: Any) -> AdapterOutput:
    out = translate_osv(doc, upstream_id="test")
    assert out.entries or out.untranslated
    return out


def advisories(out: AdapterOutput) -> dict[tuple[tuple[str, ...], str], Any]:
    return {
        (e.bucket, e.key): e.value for e in out.entries if e.bucket[0] not in ("vulnerability", "data-source")
    }


def reasons(out: AdapterOutput) -> list[str]:
    return [u.reason for u in out.untranslated]


def only_advisory(out: AdapterOutput) -> Any:
    (value,) = advisories(out).values()
    return value


# --- ecosystems and buckets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ecosystem", "name", "record_id", "bucket", "key"),
    [
        ("PyPI", "Foo_Bar", "PYSEC-1", "pip::Python Packaging Advisory Database", "foo-bar"),
        ("PyPI", "zope.interface", "PYSEC-1", "pip::Python Packaging Advisory Database", "zope.interface"),
        ("PyPI", "Django", "GHSA-aaaa-bbbb-cccc", "pip::GitHub Security Advisory pip", "django"),
        (
            "npm",
            "@Babel/Traverse",
            "GHSA-aaaa-bbbb-cccc",
            "npm::GitHub Security Advisory npm",
            "@babel/traverse",
        ),
        (
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            "GHSA-aaaa-bbbb-cccc",
            "maven::GitHub Security Advisory Maven",
            "org.apache.logging.log4j:log4j-core",
        ),
        (
            "Go",
            "github.com/BurntSushi/toml",
            "GO-2020-1",
            "go::The Go Vulnerability Database",
            "github.com/BurntSushi/toml",
        ),
        (
            "Go",
            "github.com/Gin/gin",
            "GHSA-aaaa-bbbb-cccc",
            "go::GitHub Security Advisory Go",
            "github.com/Gin/gin",
        ),
        ("crates.io", "OpenSSL", "RUSTSEC-2016-1", "cargo::RustSec Advisory Database", "openssl"),
        ("crates.io", "hyper", "GHSA-aaaa-bbbb-cccc", "cargo::GitHub Security Advisory Rust", "hyper"),
        ("RubyGems", "Rails", "GHSA-aaaa-bbbb-cccc", "rubygems::GitHub Security Advisory RubyGems", "rails"),
        (
            "NuGet",
            "Newtonsoft.Json",
            "GHSA-aaaa-bbbb-cccc",
            "nuget::GitHub Security Advisory NuGet",
            "newtonsoft.json",
        ),
        (
            "Packagist",
            "Symfony/Http-Kernel",
            "GHSA-aaaa-bbbb-cccc",
            "composer::GitHub Security Advisory Composer",
            "symfony/http-kernel",
        ),
        ("Pub", "Http", "GHSA-aaaa-bbbb-cccc", "pub::GitHub Security Advisory Pub", "http"),
        ("Hex", "Plug", "GHSA-aaaa-bbbb-cccc", "erlang::GitHub Security Advisory Erlang", "plug"),
        (
            "SwiftURL",
            "https://github.com/Apple/swift-nio.git",
            "GHSA-aaaa-bbbb-cccc",
            "swift::GitHub Security Advisory Swift",
            "github.com/Apple/swift-nio",
        ),
        ("Bitnami", "ActiveMQ", "BIT-activemq-2020-1", "bitnami::Bitnami Vulnerability Database", "activemq"),
        ("PyPI", "requests", "OSV-2020-1", "pip::Open Source Vulnerabilities", "requests"),
        ("Debian:12", "openssl", "DSA-1-1", "debian 12", "openssl"),
        ("Alpine:v3.18", "openssl", "ALPINE-1", "alpine 3.18", "openssl"),
        ("Ubuntu:22.04:LTS", "openssl", "USN-1", "ubuntu 22.04", "openssl"),
        ("Ubuntu:Pro:18.04:LTS", "openssl", "USN-1", "ubuntu 18.04-ESM", "openssl"),
        ("Rocky Linux:9", "openssl", "RLSA-1", "rocky 9", "openssl"),
        ("AlmaLinux:8", "openssl", "ALSA-1", "alma 8", "openssl"),
        ("Wolfi", "openssl", "CGA-1", "wolfi", "openssl"),
    ],
)
def test_placement(ecosystem: str, name: str, record_id: str, bucket: str, key: str) -> None:
    placed = place(ecosystem, name, record_id=record_id)
    assert not isinstance(placed, type(place("OSS-Fuzz", "x", record_id="x")))
    assert (placed.bucket, placed.package) == (bucket, key)  # type: ignore[union-attr]


def test_every_bucket_gets_its_data_source() -> None:
    out = run(
        osv(
            "PyPI",
            "django",
            events=[{"introduced": "0"}, {"fixed": "3.2.5"}],
            record_id="GHSA-aaaa-bbbb-cccc",
        )
    )
    sources = {e.key: e.value for e in out.entries if e.bucket == ("data-source",)}
    assert sources == {
        "pip::GitHub Security Advisory pip": {
            "ID": "ghsa",
            "Name": "GitHub Security Advisory pip",
            "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
        }
    }
    buckets = {e.bucket[0] for e in out.entries} - {"vulnerability", "data-source"}
    assert buckets == set(sources)


@pytest.mark.parametrize(
    ("ecosystem", "reason"),
    [
        ("OSS-Fuzz", "unsupported-ecosystem"),
        ("GIT", "unsupported-ecosystem"),
        ("Debian", "os-release-missing"),
        ("Alpine", "os-release-missing"),
        ("Ubuntu:Pro:FIPS:18.04", "unsupported-ecosystem"),
        ("Red Hat:enterprise_linux:9", "unsupported-ecosystem"),
    ],
)
def test_unplaceable_ecosystems(ecosystem: str, reason: str) -> None:
    out = run(osv(ecosystem, "pkg", events=[{"introduced": "0"}, {"fixed": "1.0"}]))
    assert out.entries == ()
    assert reasons(out) == [reason]
    assert ecosystem in out.untranslated[0].detail


# --- range kinds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "vulnerable", "patched"),
    [
        ([{"introduced": "0"}, {"fixed": "2.20.0"}], ["<2.20.0"], ["2.20.0"]),
        ([{"introduced": "1.2.0"}, {"fixed": "1.2.5"}], [">=1.2.0, <1.2.5"], ["1.2.5"]),
        ([{"introduced": "2.0.0"}], [">=2.0.0"], None),
        ([{"introduced": "0"}], [""], None),
        ([{"introduced": "0"}, {"last_affected": "1.4.0"}], ["<=1.4.0"], None),
        ([{"introduced": "1.3.7"}, {"last_affected": "1.3.7"}], ["==1.3.7"], None),
        (
            [{"introduced": "0"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.3"}],
            ["<1.1", ">=2.0, <2.3"],
            ["1.1", "2.3"],
        ),
        # OSV events are evaluated sorted by version, whatever the producer's order.
        (
            [{"fixed": "2.3"}, {"introduced": "2.0"}, {"fixed": "1.1"}, {"introduced": "0"}],
            ["<1.1", ">=2.0, <2.3"],
            ["1.1", "2.3"],
        ),
        # Only the first last_affected after an introduced closes the range.
        ([{"introduced": "1.0"}, {"last_affected": "1.2"}, {"last_affected": "1.5"}], [">=1.0, <=1.2"], None),
        ([{"introduced": "1.0"}, {"limit": "1.8"}], [">=1.0, <1.8"], None),
        ([{"introduced": "1.0"}, {"fixed": "1.5"}, {"limit": "*"}], [">=1.0, <1.5"], ["1.5"]),
        # Canonical PEP 440 spelling: Trivy rejects "RC1" and "alpha".
        ([{"introduced": "0.3.2.RC1"}, {"fixed": "1.0alpha2"}], [">=0.3.2rc1, <1.0a2"], ["1.0a2"]),
    ],
)
def test_pip_ranges(events: list[dict[str, str]], vulnerable: list[str], patched: list[str] | None) -> None:
    value = only_advisory(run(osv(events=events)))
    assert value["VulnerableVersions"] == vulnerable
    assert value.get("PatchedVersions") == patched


@pytest.mark.parametrize(
    ("ecosystem", "range_type", "events", "vulnerable"),
    [
        ("npm", "SEMVER", [{"introduced": "0"}, {"fixed": "7.23.2"}], ["<7.23.2"]),
        (
            "npm",
            "ECOSYSTEM",
            [{"introduced": "8.0.0-alpha.0"}, {"fixed": "8.0.0-alpha.4"}],
            [">=8.0.0-alpha.0, <8.0.0-alpha.4"],
        ),
        ("Go", "SEMVER", [{"introduced": "0"}, {"fixed": "1.6.0"}], ["<1.6.0"]),
        (
            "Go",
            "SEMVER",
            [{"introduced": "0.0.0-20210101000000-abcdef012345"}, {"fixed": "0.1.0"}],
            [">=0.0.0-20210101000000-abcdef012345, <0.1.0"],
        ),
        ("crates.io", "SEMVER", [{"introduced": "0.0.0-0"}, {"fixed": "0.9.0"}], ["<0.9.0"]),
        ("Maven", "ECOSYSTEM", [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}], [">=2.0-beta9, <2.15.0"]),
        (
            "Packagist",
            "ECOSYSTEM",
            [{"introduced": "4.0.0"}, {"last_affected": "4.4.0"}],
            [">=4.0.0, <=4.4.0"],
        ),
        ("RubyGems", "ECOSYSTEM", [{"introduced": "0"}, {"fixed": "6.1.7.3"}], ["<6.1.7.3"]),
        ("NuGet", "ECOSYSTEM", [{"introduced": "0"}, {"fixed": "13.0.1"}], ["<13.0.1"]),
        ("Hex", "ECOSYSTEM", [{"introduced": "1.0.0"}, {"last_affected": "1.0.0"}], ["=1.0.0"]),
        ("Bitnami", "SEMVER", [{"introduced": "5.15.12"}, {"last_affected": "5.15.12"}], ["=5.15.12"]),
    ],
)
def test_language_ranges(
    ecosystem: str, range_type: str, events: list[dict[str, str]], vulnerable: list[str]
) -> None:
    value = only_advisory(run(osv(ecosystem, "pkg", events=events, range_type=range_type)))
    assert value["VulnerableVersions"] == vulnerable


def test_versions_list_adds_exact_constraints_outside_ranges() -> None:
    value = only_advisory(
        run(osv(events=[{"introduced": "1.0"}, {"fixed": "1.2"}], versions=["1.0", "1.1", "0.9", "1.2.0rc1"]))
    )
    # 1.0, 1.1 and the pre-release 1.2.0rc1 lie in the range already (PEP 440 order).
    assert value["VulnerableVersions"] == [">=1.0, <1.2", "==0.9"]


def test_versions_only_record() -> None:
    value = only_advisory(run(osv("Maven", "g:a", versions=["1.0", "1.1"])))
    assert value == {"VulnerableVersions": ["=1.0", "=1.1"]}


def test_fixed_version_covered_elsewhere_is_not_patched() -> None:
    # Trivy lets PatchedVersions win over VulnerableVersions, so a fix of one range that
    # another range (or a listed version) still covers must not be written as secure.
    doc = osv(events=[{"introduced": "1.0"}, {"fixed": "2.0"}])
    doc["affected"][0]["ranges"].append(
        {"type": "ECOSYSTEM", "events": [{"introduced": "1.9"}, {"last_affected": "2.1"}]}
    )
    assert only_advisory(run(doc)) == {"VulnerableVersions": [">=1.0, <2.0", ">=1.9, <=2.1"]}
    out = run(osv(events=[{"introduced": "1.0"}, {"fixed": "2.0"}], versions=["2.0"]))
    assert only_advisory(out) == {"VulnerableVersions": [">=1.0, <2.0", "==2.0"]}


def test_affected_entries_of_one_package_merge() -> None:
    doc = osv(
        "npm",
        "@fastify/passport",
        events=[{"introduced": "0"}, {"fixed": "1.1.0"}],
        record_id="GHSA-2ccf-ffrj-m4qw",
    )
    doc["affected"].append(
        {
            "package": {"ecosystem": "npm", "name": "@fastify/passport"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0.0"}, {"fixed": "2.3.0"}]}],
        }
    )
    assert only_advisory(run(doc)) == {
        "VulnerableVersions": ["<1.1.0", ">=2.0.0, <2.3.0"],
        "PatchedVersions": ["1.1.0", "2.3.0"],
    }


def test_git_ranges_beside_ecosystem_ranges_are_not_reported() -> None:
    doc = osv(events=[{"introduced": "0"}, {"fixed": "1.0"}])
    doc["affected"][0]["ranges"].append(
        {"type": "GIT", "repo": "https://x", "events": [{"introduced": "0"}, {"fixed": "abc"}]}
    )
    out = run(doc)
    assert out.untranslated == ()
    assert only_advisory(out)["VulnerableVersions"] == ["<1.0"]


def test_git_only_ranges_are_untranslatable() -> None:
    doc = osv(events=[{"introduced": "0"}, {"fixed": "a" * 40}], range_type="GIT")
    assert reasons(run(doc)) == ["git-only-range"]
    psf = {
        "id": "PSF-2007-1",
        "affected": [
            {
                "ranges": [
                    {
                        "type": "GIT",
                        "repo": "https://github.com/python/cpython",
                        "events": [{"introduced": "0"}, {"fixed": "4df1"}],
                    }
                ]
            }
        ],
    }
    assert reasons(run(psf)) == ["git-only-range"]


def test_unparsable_bound_drops_only_its_range() -> None:
    doc = osv(events=[{"introduced": "0"}, {"fixed": "3.0.3-NA"}], versions=["1.0", "0.5m5"])
    out = run(doc)
    assert sorted(reasons(out)) == ["unparsable-version", "unparsable-version"]
    assert any("'3.0.3-NA'" in u.detail and "PyPI" in u.detail for u in out.untranslated)
    assert only_advisory(out) == {"VulnerableVersions": ["==1.0"]}


def test_local_version_labels_are_rejected_for_trivy() -> None:
    out = run(osv(events=[{"introduced": "0"}, {"fixed": "2.6.0+cu124"}]))
    assert reasons(out) == ["unparsable-version"]
    assert "local version label" in out.untranslated[0].detail


@pytest.mark.parametrize(
    ("ecosystem", "version"),
    [
        ("npm", "1.2"),
        ("npm", "01.2.3"),
        ("Go", "v1.2.3 "),
        ("Maven", "[1.0,2.0)"),
        ("RubyGems", "1.0 beta"),
        ("Go", "latest"),
    ],
)
def test_unparsable_versions_per_ecosystem(ecosystem: str, version: str) -> None:
    out = run(osv(ecosystem, "pkg", events=[{"introduced": "0"}, {"fixed": version}]))
    assert reasons(out) == ["unparsable-version"]
    assert ecosystem in out.untranslated[0].detail or ecosystem.lower() in out.untranslated[0].detail


# --- OS advisories ---------------------------------------------------------------------


def test_os_fixed_and_unfixed() -> None:
    fixed = run(
        osv(
            "Debian:12",
            "openssl",
            events=[{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}],
            record_id="DSA-5532-1",
            aliases=["CVE-2023-5363"],
        )
    )
    assert advisories(fixed) == {
        (("debian 12", "openssl"), "CVE-2023-5363"): {
            "FixedVersion": "3.0.11-1~deb12u1",
            "VendorIDs": ["DSA-5532-1"],
        }
    }
    unfixed = run(
        osv(
            "Alpine:v3.18",
            "busybox",
            events=[{"introduced": "0"}],
            record_id="ALPINE-CVE-1",
            aliases=["CVE-2022-1"],
        )
    )
    assert only_advisory(unfixed)["Status"] == 2


@pytest.mark.parametrize(
    "events",
    [
        [{"introduced": "1.0-1"}, {"fixed": "1.2-1"}],
        [{"introduced": "0"}, {"last_affected": "1.2-1"}],
        [{"introduced": "0"}, {"fixed": "1.2-1"}, {"introduced": "2.0-1"}, {"fixed": "2.2-1"}],
    ],
)
def test_os_ranges_a_single_fixed_version_cannot_express(events: list[dict[str, str]]) -> None:
    out = run(osv("Debian:11", "openssl", events=events))
    assert out.entries == ()
    assert reasons(out) == ["os-range-unrepresentable"]


# --- ids, details, withdrawn, malformed -------------------------------------------------


def test_cve_alias_keys_the_advisory_and_other_ids_are_vendor_ids() -> None:
    out = run(
        osv(
            events=[{"introduced": "0"}, {"fixed": "2.20.0"}],
            record_id="PYSEC-2018-28",
            aliases=["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"],
        )
    )
    assert advisories(out) == {
        (("pip::Python Packaging Advisory Database", "requests"), "CVE-2018-18074"): {
            "VulnerableVersions": ["<2.20.0"],
            "PatchedVersions": ["2.20.0"],
            "VendorIDs": ["PYSEC-2018-28", "GHSA-x84v-xcm2-53pg"],
        }
    }
    assert [e.key for e in out.entries if e.bucket == ("vulnerability",)] == ["CVE-2018-18074"]


def test_without_cve_the_record_id_keys_it() -> None:
    out = run(osv(events=[{"introduced": "0"}], record_id="GHSA-aaaa-bbbb-cccc", aliases=["PYSEC-1"]))
    assert {e.key for e in out.entries if e.bucket != ("data-source",)} == {"GHSA-aaaa-bbbb-cccc"}
    assert only_advisory(out)["VendorIDs"] == ["PYSEC-1"]


def test_two_cves_give_two_advisories() -> None:
    out = run(osv(events=[{"introduced": "0"}], aliases=["CVE-2020-1", "CVE-2020-2"]))
    assert sorted(key for _bucket, key in advisories(out)) == ["CVE-2020-1", "CVE-2020-2"]


def test_vulnerability_details_come_only_from_the_advisory() -> None:
    doc = osv(
        "Maven",
        "org.apache.logging.log4j:log4j-core",
        events=[{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}],
        record_id="GHSA-jfh8-c2jp-5v3q",
        aliases=["CVE-2021-44228"],
        summary="Remote code injection in Log4j",
        details="Log4j2 JNDI features ...",
        severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
        references=[
            {"type": "WEB", "url": "https://b.example"},
            {"type": "ADVISORY", "url": "https://a.example"},
            {"url": "https://a.example"},
        ],
        database_specific={"severity": "CRITICAL", "cwe_ids": ["CWE-502", "CWE-400"]},
        published="2021-12-10T00:40:56Z",
        modified="2023-01-01T00:00:00.123Z",
    )
    (detail,) = [e for e in run(doc).entries if e.bucket == ("vulnerability",)]
    assert detail == TrivyEntry(
        ("vulnerability",),
        "CVE-2021-44228",
        {
            "Title": "Remote code injection in Log4j",
            "Description": "Log4j2 JNDI features ...",
            "References": ["https://a.example", "https://b.example"],
            "CweIDs": ["CWE-502", "CWE-400"],
            "PublishedDate": "2021-12-10T00:40:56Z",
            "LastModifiedDate": "2023-01-01T00:00:00.123Z",
            "CVSS": {"ghsa": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}},
            "VendorSeverity": {"ghsa": 4},
        },
    )
    assert isinstance(detail.value["VendorSeverity"]["ghsa"], int)  # Trivy rejects floats here


def test_no_severity_is_invented() -> None:
    doc = osv(
        events=[{"introduced": "0"}],
        severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    )
    (detail,) = [e.value for e in run(doc).entries if e.bucket == ("vulnerability",)]
    assert "VendorSeverity" not in detail and "Severity" not in detail
    assert "V3Score" not in detail["CVSS"]["osv"]


def test_bad_dates_and_unknown_severity_are_reported_not_written() -> None:
    doc = osv(
        events=[{"introduced": "0"}],
        published="yesterday",
        database_specific={"severity": "SEVERE"},
        severity=[{"type": "Ubuntu", "score": "high"}],
    )
    out = run(doc)
    (detail,) = [e.value for e in out.entries if e.bucket == ("vulnerability",)]
    assert "PublishedDate" not in detail and "VendorSeverity" not in detail
    assert sorted(reasons(out)) == ["malformed", "unsupported-severity", "unsupported-severity"]


def test_withdrawn_is_excluded_with_one_reason() -> None:
    out = run(osv(events=[{"introduced": "0"}], withdrawn="2024-11-22T04:37:03Z"))
    assert out.entries == () and reasons(out) == ["withdrawn"]


def test_partial_translation_keeps_the_good_affected_entry() -> None:
    doc = osv(events=[{"introduced": "0"}, {"fixed": "1.0"}])
    doc["affected"].append({"package": {"ecosystem": "OSS-Fuzz", "name": "x"}, "ranges": []})
    out = run(doc)
    assert reasons(out) == ["unsupported-ecosystem"]
    assert len(advisories(out)) == 1


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "text",
        {},
        {"id": 3},
        {"id": "X-1"},
        {"id": "X-1", "affected": "nope"},
        {"id": "X-1", "aliases": "CVE-1", "affected": []},
        {"id": "X-1", "affected": [None, 1, "a"]},
        {"id": "X-1", "affected": [{"package": "PyPI/x"}]},
        {"id": "X-1", "affected": [{"package": {"ecosystem": 1, "name": "x"}}]},
        {"id": "X-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": "r"}]},
        {
            "id": "X-1",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "ECOSYSTEM"}]}],
        },
        {
            "id": "X-1",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": 1}]}],
                }
            ],
        },
        {
            "id": "X-1",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "x"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}],
                }
            ],
        },
        {"id": "X-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": [1, 2]}]},
        {"id": "X-1", "affected": [{"package": {"ecosystem": "PyPI", "name": ""}, "versions": ["1.0"]}]},
        {
            "id": "X-1",
            "affected": [
                {"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "BOGUS", "events": []}]}
            ],
        },
    ],
)
def test_malformed_records_never_raise(doc: Any) -> None:
    out = run(doc)
    assert out.entries == ()
    assert set(reasons(out)) <= {"malformed", "no-affected-package", "unsupported-range"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "affected",
                    "package",
                    "ecosystem",
                    "name",
                    "ranges",
                    "type",
                    "events",
                    "introduced",
                    "fixed",
                    "versions",
                    "aliases",
                    "severity",
                    "database_specific",
                    "withdrawn",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_never_raises(doc: Any) -> None:
    out = translate_osv(doc, upstream_id="fuzz")
    assert out.entries or out.untranslated
    for entry in out.entries:
        dumps(entry.value)  # every value is canonical JSON


# --- version rendering properties --------------------------------------------------------

_release = st.lists(st.integers(0, 40), min_size=1, max_size=4).map(lambda p: ".".join(map(str, p)))
_pre = st.sampled_from(["", "a1", "b2", "rc1", ".post1", ".dev3", "alpha2", "RC3", "-preview1"])


@settings(max_examples=300, deadline=None)
@given(_release, _pre)
def test_pep440_rendering_is_canonical_and_order_preserving(release: str, pre: str) -> None:
    rendered = render_version(Scheme.PEP440, release + pre)
    assert isinstance(rendered, str)
    assert rendered == str(Version(rendered)) and Version(rendered) == Version(release + pre)


@settings(max_examples=300, deadline=None)
# Unique as versions, not as strings: "0" and "0.0" are one version, and two events at one
# version keep their producer's order, so shuffling them may rightly change the sweep.
@given(st.lists(_release, min_size=1, max_size=6, unique_by=Version), st.booleans())
def test_sorted_sweep_yields_disjoint_ordered_intervals(bounds: list[str], start_open: bool) -> None:
    ordered = sorted(bounds, key=Version)
    kinds = ["introduced", "fixed"]
    events = [("introduced", "0")] if start_open else []
    events += [(kinds[(i + start_open) % 2], b) for i, b in enumerate(ordered)]
    shuffled = list(reversed(events))
    result = intervals_from_events(Scheme.PEP440, "ECOSYSTEM", shuffled, "t")
    assert not isinstance(result, VersionProblem)
    intervals, fixed = result
    expected = intervals_from_events(Scheme.PEP440, "ECOSYSTEM", events, "t")
    assert (intervals, fixed) == expected
    for interval in intervals:
        text = render_interval(Scheme.PEP440, interval)
        assert text == "" or all(part.startswith((">=", "<", "==")) for part in text.split(", "))
        if interval.lower is not None and interval.upper is not None:
            assert Version(interval.lower) < Version(interval.upper)


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (Interval(None), ""),
        (Interval("1.0"), ">=1.0"),
        (Interval(None, "2.0"), "<2.0"),
        (Interval(None, "2.0", True), "<=2.0"),
        (Interval("1.0", "1.0", True), "=1.0"),
        (Interval("1.0", None, False, "3.0"), ">=1.0, <3.0"),
    ],
)
def test_render_interval_generic(interval: Interval, text: str) -> None:
    assert render_interval(Scheme.GENERIC, interval) == text


# --- merging -------------------------------------------------------------------------------


def test_merge_value_is_commutative_and_unions() -> None:
    a = {"VulnerableVersions": ["<1.0"], "PatchedVersions": ["1.0"], "VendorIDs": ["PYSEC-1"]}
    b = {"VulnerableVersions": [">=2.0, <2.1", "<1.0"], "PatchedVersions": ["2.1"], "VendorIDs": ["GHSA-x"]}
    bucket = ("pip::Python Packaging Advisory Database", "x")
    merged = merge_value(bucket, a, b)
    assert merged == merge_value(bucket, b, a)
    assert merged["VulnerableVersions"] == ["<1.0", ">=2.0, <2.1"]
    v1 = {"Title": "t", "VendorSeverity": {"ghsa": 3}, "References": ["b"]}
    v2 = {"Title": "t", "VendorSeverity": {"osv": 2}, "References": ["a"]}
    assert merge_value(("vulnerability",), v1, v2) == {
        "Title": "t",
        "VendorSeverity": {"ghsa": 3, "osv": 2},
        "References": ["a", "b"],
    }


# --- all shared advisories ----------------------------------------------------------------


def _records(shared: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((shared / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            data = zstandard.ZstdDecompressor().stream_reader(handle).read()
        for line in data.splitlines():
            yield path.name, json.loads(line)


def test_every_shared_advisory_yields_entries_or_reasons(shared_data: Path) -> None:
    per_reason: collections.Counter[str] = collections.Counter()
    per_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for name, record in _records(shared_data):
        total += 1
        out = translate_osv(record, upstream_id=record.get("id", "?"))
        assert out.entries or out.untranslated, record.get("id")
        per_file[name]["with entries" if out.entries else "untranslated only"] += 1
        for item in out.untranslated:
            per_reason[item.reason] += 1
            assert item.detail
        for entry in out.entries:
            assert entry.key and all(entry.bucket)
            dumps(entry.value)
    print(f"\n{total} records")
    for name, counts in sorted(per_file.items()):
        print(f"  {name}: {dict(counts)}")
    print("untranslated per reason:")
    for reason, count in sorted(per_reason.items()):
        print(f"  {reason}: {count}")
    assert total == 9689
    assert per_reason["withdrawn"] == 274
    assert per_reason["git-only-range"] == 85  # the PSF records
    assert set(per_reason) <= {
        "withdrawn", "git-only-range", "unsupported-ecosystem", "unparsable-version", "no-affected-versions",
    }  # fmt: skip
