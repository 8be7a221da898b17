"""OS buckets judged by the real Trivy 0.76: ``trivy rootfs`` of Debian, Ubuntu, Alpine, Rocky and Alma trees.

The shared data set has no distro advisories, so the test writes OSV records of its own
(``Debian:12``, ``Ubuntu:22.04:LTS``, ``Alpine:v3.19``, ``Rocky Linux:9``, ``AlmaLinux:9``)
around the versions of packages it installs into minimal root file systems
(``etc/os-release`` plus a dpkg ``status`` file, an apk ``installed`` database, or an RPM
database made by the real ``rpm`` from packages ``rpmbuild`` builds, with the distro's
vendor, since Trivy skips third-party RPMs). The expected findings come from the OSV
semantics -- an ``introduced: 0, fixed: F`` range affects every version below F, a range
with no fix affects every version -- with dpkg's own ``--compare-versions`` and rpm's own
``rpm.vercmp`` as comparers, and apk's ordering of ``X.Y.Z-rN`` written out below; never
from the adapter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stella.adapters.trivy.osv import TrivyEntry, translate_osv
from tests.adapters.trivy_scan import write_trivy_db
from tests.support import require_tool

pytestmark = [pytest.mark.trivy, pytest.mark.slow]


@dataclass(frozen=True)
class Installed:
    name: str
    version: str  # for RPMs: [epoch:]version-release


@dataclass(frozen=True)
class Case:
    """One advisory on one installed package: fixed version (None = no fix yet)."""

    vuln: str
    package: str
    fixed: str | None


@dataclass(frozen=True)
class Distro:
    ecosystem: str  # OSV ecosystem
    os_release: str
    family: str  # "dpkg", "apk" or "rpm"
    installed: tuple[Installed, ...]
    cases: tuple[Case, ...]
    vendor: str = ""  # RPM Vendor tag Trivy requires of distro packages


_DISTROS = {
    "debian": Distro(
        "Debian:12",
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
        "dpkg",
        (Installed("openssl", "3.0.11-1~deb12u2"), Installed("zlib", "1:1.2.13.dfsg-1"),
         Installed("bash", "5.2.15-2+b2")),
        (
            Case("CVE-2099-1001", "openssl", "3.0.13-1~deb12u1"),  # newer upstream: affected
            Case("CVE-2099-1002", "openssl", "3.0.11-1~deb12u1"),  # older security update: fixed
            Case("CVE-2099-1003", "openssl", "3.0.11-1~deb12u2"),  # exactly installed: fixed
            Case("CVE-2099-1004", "zlib", "1.2.99-1"),  # no epoch < epoch 1: fixed
            Case("CVE-2099-1005", "zlib", "1:1.2.13.dfsg-1+deb12u1"),  # same epoch, later suffix: affected
            Case("CVE-2099-1006", "bash", None),  # no fix yet: affected
        ),
    ),
    "ubuntu": Distro(
        "Ubuntu:22.04:LTS",
        'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n',
        "dpkg",
        (Installed("curl", "7.81.0-1ubuntu1.15"), Installed("sudo", "1.9.9-1ubuntu2.4")),
        (
            Case("CVE-2099-2001", "curl", "7.81.0-1ubuntu1.16"),  # affected
            Case("CVE-2099-2002", "curl", "7.81.0-1ubuntu1.10"),  # fixed
            Case("CVE-2099-2003", "sudo", "1.9.9-1ubuntu2.4"),  # fixed (equal)
        ),
    ),
    "alpine": Distro(
        "Alpine:v3.19",
        'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n',
        "apk",
        (Installed("musl", "1.2.4_git20230717-r4"), Installed("busybox", "1.36.1-r15"),
         Installed("libcrypto3", "3.1.4-r5")),
        (
            Case("CVE-2099-3001", "busybox", "1.36.1-r16"),  # later revision: affected
            Case("CVE-2099-3002", "busybox", "1.36.1-r2"),  # r2 < r15 numerically: fixed
            Case("CVE-2099-3003", "libcrypto3", "3.1.4-r6"),  # affected
            Case("CVE-2099-3004", "libcrypto3", "3.1.10-r0"),  # 3.1.10 > 3.1.4: affected
            Case("CVE-2099-3005", "musl", None),  # no fix: affected
        ),
    ),
    "wolfi": Distro(
        "Wolfi",
        'ID=wolfi\nNAME="Wolfi"\nPRETTY_NAME="Wolfi"\nVERSION_ID="20230201"\n',
        "apk",
        (Installed("glibc", "2.38-r5"),),
        (
            Case("CVE-2099-6001", "glibc", "2.38-r6"),  # affected
            Case("CVE-2099-6002", "glibc", "2.38-r1"),  # fixed
            Case("CVE-2099-6003", "glibc", None),  # no fix
        ),
    ),
    "chainguard": Distro(
        "Chainguard",
        'ID=chainguard\nNAME="Chainguard"\nPRETTY_NAME="Chainguard"\nVERSION_ID="20230214"\n',
        "apk",
        (Installed("openssl", "3.2.0-r2"),),
        (
            Case("CVE-2099-7001", "openssl", "3.2.1-r0"),  # affected
            Case("CVE-2099-7002", "openssl", None),  # no fix
        ),
    ),
    "rocky": Distro(
        "Rocky Linux:9",
        'NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.3"\nPLATFORM_ID="platform:el9"\n',
        "rpm",
        (Installed("openssl", "1:3.0.7-24.el9"), Installed("bash", "5.1.8-6.el9_1")),
        (
            Case("CVE-2099-4001", "openssl", "1:3.0.7-25.el9_3"),  # later release: affected
            Case("CVE-2099-4002", "openssl", "1:3.0.7-20.el9"),  # earlier release: fixed
            Case("CVE-2099-4003", "openssl", "3.0.8-1.el9"),  # epoch 0 < epoch 1: fixed
            Case("CVE-2099-4004", "bash", "5.1.8-9.el9"),  # affected
            Case("CVE-2099-4005", "bash", None),  # no fix: affected
        ),
        "Rocky Enterprise Software Foundation",
    ),
    "alma": Distro(
        "AlmaLinux:9",
        'NAME="AlmaLinux"\nID="almalinux"\nVERSION_ID="9.3"\nPLATFORM_ID="platform:el9"\n',
        "rpm",
        (Installed("curl", "7.76.1-26.el9_3.2"),),
        (
            Case("CVE-2099-5001", "curl", "7.76.1-26.el9_3.3"),  # affected
            Case("CVE-2099-5002", "curl", "7.76.1-26.el9_3.10"),  # 10 > 2 numerically: affected
            Case("CVE-2099-5003", "curl", "7.76.1-26.el9_3"),  # shorter release sorts first: fixed
            Case("CVE-2099-5004", "curl", None),  # no fix
        ),
        "AlmaLinux",
    ),
}  # fmt: skip
# Trivy's detectors for these compare FixedVersion only (updateinfo/secdb feeds list fixes,
# never "affected, no fix"): an unfixed OSV range cannot become a finding there, so the
# adapter must count it as untranslated instead of writing an entry that never matches.
_UNFIXED_UNREPORTED = {"rocky", "alma", "wolfi", "chainguard"}
_RPM_SPEC = """Name: %{n}
Version: %{v}
Release: %{r}
Epoch: %{e}
Summary: test package
License: MIT
Vendor: %{vendor}
BuildArch: noarch
%description
test package
%files
"""


def _osv(distro: Distro, case: Case) -> dict[str, Any]:
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if case.fixed is not None:
        events.append({"fixed": case.fixed})
    return {
        "schema_version": "1.6.0",
        "id": f"TEST-{case.vuln}",
        "aliases": [case.vuln],
        "modified": "2026-01-01T00:00:00Z",
        "published": "2026-01-01T00:00:00Z",
        "summary": f"{case.package}: test advisory {case.vuln}",
        "affected": [
            {
                "package": {"ecosystem": distro.ecosystem, "name": case.package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }


def _dpkg_lt(a: str, b: str) -> bool:
    done = subprocess.run([require_tool("dpkg"), "--compare-versions", a, "lt", b], check=False)
    return done.returncode == 0


def _rpm_lt(a: str, b: str) -> bool:
    lua = f'%{{lua: print(rpm.vercmp("{a}", "{b}"))}}'
    done = subprocess.run([require_tool("rpm"), "--eval", lua], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) < 0


def _apk_key(version: str) -> tuple[tuple[int, ...], str, int]:
    """apk order for the ``X.Y.Z[_suffix]-rN`` versions used here: numbers, then suffix, then revision."""
    match = re.fullmatch(r"([\d.]+)(_[a-z]+\d*)?-r(\d+)", version)
    assert match, version
    return tuple(int(p) for p in match.group(1).split(".")), match.group(2) or "", int(match.group(3))


def _expected(name: str, distro: Distro) -> set[tuple[str, str, str]]:
    versions = {i.name: i.version for i in distro.installed}
    out = set()
    for case in distro.cases:
        installed = versions[case.package]
        if case.fixed is None:
            affected = name not in _UNFIXED_UNREPORTED
        elif distro.family == "dpkg":
            affected = _dpkg_lt(installed, case.fixed)
        elif distro.family == "rpm":
            affected = _rpm_lt(installed, case.fixed)
        else:
            affected = _apk_key(installed) < _apk_key(case.fixed)
        if affected:
            out.add((case.package, installed, case.vuln))
    return out


def _rootfs(root: Path, distro: Distro) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(distro.os_release)
    if distro.family == "dpkg":
        if distro.ecosystem.startswith("Debian"):
            (root / "etc" / "debian_version").write_text("12.5\n")
        else:  # Trivy's Ubuntu analyzer reads lsb-release
            (root / "etc" / "lsb-release").write_text("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n")
        status = root / "var" / "lib" / "dpkg" / "status"
        status.parent.mkdir(parents=True)
        status.write_text(
            "\n".join(
                f"Package: {p.name}\nStatus: install ok installed\nPriority: optional\n"
                f"Architecture: amd64\nVersion: {p.version}\nDescription: {p.name}\n"
                for p in distro.installed
            )
        )
    elif distro.family == "rpm":
        _rpmdb(root, distro)
    else:
        if distro.ecosystem.startswith("Alpine"):
            (root / "etc" / "alpine-release").write_text("3.19.1\n")
        db = root / "lib" / "apk" / "db" / "installed"
        db.parent.mkdir(parents=True)
        db.write_text(
            "\n".join(
                f"C:Q1{'A' * 27}=\nP:{p.name}\nV:{p.version}\nA:x86_64\nS:1000\nI:2000\n"
                f"T:{p.name}\nU:https://example.org\nL:MIT\no:{p.name}\nm:Test <t@example.org>\n"
                for p in distro.installed
            )
        )
    return root


def _rpmdb(root: Path, distro: Distro) -> None:
    """``var/lib/rpm/rpmdb.sqlite`` holding the installed packages, made by the real rpm."""
    rpm, rpmbuild = require_tool("rpm"), require_tool("rpmbuild")
    top = root.parent / "rpmbuild"
    spec = root.parent / "pkg.spec"
    spec.write_text(_RPM_SPEC)
    for package in distro.installed:
        epoch, _, rest = package.version.rpartition(":")
        version, _, release = rest.rpartition("-")
        defines = {"_topdir": str(top), "n": package.name, "v": version, "r": release,
                   "e": epoch or "0", "vendor": distro.vendor}  # fmt: skip
        args = [a for k, v in defines.items() for a in ("--define", f"{k} {v}")]
        subprocess.run([rpmbuild, "-bb", *args, str(spec)], capture_output=True, check=True)
    rpms = sorted(str(p) for p in top.rglob("*.rpm"))
    db = ["--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([rpm, *db, "--initdb"], capture_output=True, check=True)
    subprocess.run(
        [rpm, *db, "-i", "--justdb", "--nodeps", "--noscripts", *rpms], capture_output=True, check=True
    )
    for leftover in (root / "var" / "lib" / "rpm").glob("*"):  # WAL/SHM/lock: Trivy reads the main file
        if leftover.name != "rpmdb.sqlite":
            leftover.unlink()


def _scan_rootfs(trivy: str, cache: Path, root: Path) -> tuple[set[tuple[str, str, str]], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVY_")}
    env["HOME"] = str(cache / "home")
    proc = subprocess.run(
        [
            trivy, "rootfs", "--scanners", "vuln", "--skip-db-update", "--skip-java-db-update",
            "--offline-scan", "--cache-dir", str(cache), "--format", "json", "--quiet", str(root),
        ],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"trivy rootfs failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout)
    found = {
        (v["PkgName"], v["InstalledVersion"], v["VulnerabilityID"])
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    }
    return found, report


@pytest.mark.parametrize("name", sorted(_DISTROS))
def test_trivy_rootfs_reports_os_advisories(name: str, tmp_path: Path) -> None:
    trivy = require_tool("trivy")
    distro = _DISTROS[name]
    entries: list[TrivyEntry] = []
    for case in distro.cases:
        output = translate_osv(_osv(distro, case), upstream_id=case.vuln)
        if case.fixed is None and name in _UNFIXED_UNREPORTED:
            assert [u.reason for u in output.untranslated] == ["os-unfixed-unmatched"], output
            assert not output.entries
            continue
        assert not output.untranslated, output.untranslated
        entries.extend(output.entries)
    write_trivy_db(tmp_path / "cache", entries)
    root = _rootfs(tmp_path / "rootfs", distro)

    found, report = _scan_rootfs(trivy, tmp_path / "cache", root)

    detected = (report.get("Metadata") or {}).get("OS") or {}
    assert detected.get("Family") == name, f"Trivy detected {detected}"
    expected = _expected(name, distro)
    assert expected, "the cases must include affected packages"
    assert found == expected, (
        f"{name}: trivy-only {sorted(found - expected)}, oracle-only {sorted(expected - found)}"
    )
    # Trivy names the data source our data-source bucket declares for the distro.
    sources = {
        (v.get("DataSource") or {}).get("ID")
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    }
    assert sources == {name}, sources
