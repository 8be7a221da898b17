"""CycloneDX SBOMs with an operating system, and OSV advisories around their packages' versions.

The shared data set has OS packages (the 477 RPMs of a RHEL 9.4 image in
``python311-container.syft.cdx.json``) but no distro advisories, and Trivy matches Red
Hat through its own OVAL/CSAF buckets, which no OSV feed fills. So the cross-check
re-homes those real RPMs (names, versions, epochs, arches) on Rocky Linux 9.4 and
AlmaLinux 9.4, rebuilds of the same sources, and writes OSV ``Rocky Linux:9`` and
``AlmaLinux:9`` records around their versions. Debian, Ubuntu, Alpine and Wolfi have no
packages in the shared data: their SBOMs hold
a few real package versions written out here, chosen for the edge cases (epochs,
``~debNuM`` updates, binNMUs, ``0ubuntu`` revisions, apk ``_git``/``_rc``/``_p`` suffixes).

Each advisory is one shape around one installed version: fixed at that very version,
fixed one step later or earlier, unfixed, or a range that opens at the installed version
(which Trivy's one-FixedVersion OS buckets cannot hold). Nothing here decides what is
affected: json:policy and Trivy do, and the cross-check compares them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["OS_SBOMS", "os_world", "shape_of"]

# name -> (OSV ecosystem, Trivy family, OS version, purl type/namespace, packages or None = shared RPMs)
_HANDWRITTEN: dict[str, tuple[str, str, str, str, tuple[tuple[str, str], ...]]] = {
    "debian": ("Debian:12", "debian", "12.5", "deb/debian", (
        ("openssl", "3.0.11-1~deb12u2"), ("zlib", "1:1.2.13.dfsg-1"), ("bash", "5.2.15-2+b2"),
        ("curl", "7.88.1-10+deb12u5"), ("tzdata", "2024a-0+deb12u1"), ("libxml2", "2.9.14+dfsg-1.3~deb12u1"),
        ("util-linux", "2.38.1-5+deb12u1"),
    )),
    "ubuntu": ("Ubuntu:22.04:LTS", "ubuntu", "22.04", "deb/ubuntu", (
        ("curl", "7.81.0-1ubuntu1.15"), ("sudo", "1.9.9-1ubuntu2.4"), ("openssl", "3.0.2-0ubuntu1.15"),
    )),
    "wolfi": ("Wolfi", "wolfi", "20230201", "apk/wolfi", (("glibc", "2.38-r5"), ("openssl", "3.2.0-r2"))),
    "alpine": ("Alpine:v3.19", "alpine", "3.19.1", "apk/alpine", (
        ("musl", "1.2.4_git20230717-r4"), ("busybox", "1.36.1-r15"), ("libcrypto3", "3.1.4-r5"),
        ("ncurses", "6.4_p20231125-r0"), ("xz", "5.4.5-r0"),
    )),
}  # fmt: skip
# Binary packages built from another source, with the source as Trivy's own SBOMs state it
# (properties SrcName/SrcVersion/SrcRelease): Debian's bsdutils carries an epoch its
# source util-linux has not, so only a source-version comparison gets it right.
_BINARIES: dict[str, tuple[tuple[str, str, str, str, str], ...]] = {
    "debian": (("bsdutils", "1:2.38.1-5+deb12u1", "util-linux", "2.38.1", "5+deb12u1"),),
}
OS_SBOMS = ("alma", "alpine", "debian", "rocky", "ubuntu", "wolfi")
_SHARED_RPMS = "sboms/cyclonedx/python311-container.syft.cdx.json"


def _shapes(scheme: str, version: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(shape name, OSV events) around one installed version, later/earlier bounds by the scheme's own syntax."""
    epoch, _, rest = version.rpartition(":")
    upstream, _, revision = rest.rpartition("-")
    prefix = f"{epoch}:" if epoch else ""
    if scheme == "apk":
        number = int(revision.lstrip("r"))
        later, earlier = f"{upstream}-r{number + 1}", f"{upstream}_rc1-r{number}"
    elif scheme == "rpm":
        later, earlier = f"{prefix}{upstream}-{revision}.1", f"{prefix}{upstream}~rc1-{revision}"
    else:  # dpkg
        later, earlier = f"{prefix}{upstream}-{revision}+deb1", f"{prefix}{upstream}-{revision}~deb1"
    epochless = f"{upstream}-{revision}" if epoch else f"1:{upstream}-{revision}"
    shapes = [
        ("fixed-at-installed", [{"introduced": "0"}, {"fixed": version}]),
        ("fixed-later", [{"introduced": "0"}, {"fixed": later}]),
        ("fixed-earlier", [{"introduced": "0"}, {"fixed": earlier}]),
        ("fixed-other-epoch", [{"introduced": "0"}, {"fixed": epochless}]),
        ("unfixed", [{"introduced": "0"}]),
        ("opens-at-installed", [{"introduced": version}, {"fixed": later}]),
    ]
    return [s for s in shapes if not (scheme == "apk" and s[0] == "fixed-other-epoch")]  # apk has no epochs


def _rpm_version(component: dict[str, Any]) -> tuple[str, str]:
    """(purl version, epoch qualifier) of a shared RPM component."""
    purl = component["purl"]
    version = purl.split("@", 1)[1].split("?", 1)[0]
    epoch = re.search(r"[?&]epoch=(\d+)", purl)
    return version, epoch.group(1) if epoch else ""


def _sbom(name: str, family: str, release: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:0500{sum(map(ord, name)):04x}-0000-4000-8000-000000000000",
        "metadata": {"component": {"type": "container", "name": f"{name}-test", "bom-ref": "image"}},
        "components": [{"type": "operating-system", "name": family, "version": release, "bom-ref": "os"},
                       *components],
        "dependencies": [{"ref": "os", "dependsOn": [c["bom-ref"] for c in components]}],
    }  # fmt: skip


def os_world(
    shared_data: Path, out: Path, *, rpm_sample: int = 24
) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Write the OS SBOMs under ``out``; return them by name, and the OSV records about them."""
    out.mkdir(parents=True, exist_ok=True)
    sboms: dict[str, Path] = {}
    records: list[dict[str, Any]] = []

    def advise(ecosystem: str, scheme: str, packages: list[tuple[str, str]]) -> None:
        for package, version in packages:
            for shape, events in _shapes(scheme, version):
                record_id = f"STELLA-OS-{len(records):05d}-{shape}"
                affected = {"package": {"ecosystem": ecosystem, "name": package},
                            "ranges": [{"type": "ECOSYSTEM", "events": events}]}  # fmt: skip
                records.append({"id": record_id, "modified": "2026-01-01T00:00:00Z", "summary": "synthetic",
                                "affected": [affected]})  # fmt: skip

    for name, (ecosystem, family, release, kind, packages) in _HANDWRITTEN.items():
        ptype, namespace = kind.split("/")
        distro = release if ptype == "apk" else f"{family}-{release}"
        comps = [{"type": "library", "name": p, "version": v, "bom-ref": f"{ptype}:{p}",
                  "purl": f"pkg:{kind}/{p}@{v.replace(':', '%3A')}?arch=x86_64&distro={distro}"}
                 for p, v in packages]  # fmt: skip
        for binary, version, source, src_version, src_release in _BINARIES.get(name, ()):
            comps.append({"type": "library", "name": binary, "version": version, "bom-ref": f"{ptype}:{binary}",
                          "purl": f"pkg:{kind}/{binary}@{version.replace(':', '%3A')}?arch=x86_64&distro={distro}",
                          "properties": [{"name": "aquasecurity:trivy:SrcName", "value": source},
                                         {"name": "aquasecurity:trivy:SrcVersion", "value": src_version},
                                         {"name": "aquasecurity:trivy:SrcRelease", "value": src_release}]})  # fmt: skip
        sboms[name] = out / f"{name}.cdx.json"
        sboms[name].write_text(json.dumps(_sbom(name, family, release, comps)))
        advise(ecosystem, "apk" if ptype == "apk" else "dpkg", list(packages))

    shared = json.loads((shared_data / _SHARED_RPMS).read_text())
    rpms = sorted((c for c in shared["components"] if str(c.get("purl", "")).startswith("pkg:rpm/")),
                  key=lambda c: c["name"])  # fmt: skip
    step = max(1, len(rpms) // rpm_sample)
    with_epoch = [c for c in rpms if _rpm_version(c)[1]]
    picked = {c["name"]: c for c in [*rpms[::step][:rpm_sample], *with_epoch[:4]]}  # some with epochs
    for name, ecosystem in (("rocky", "Rocky Linux:9"), ("alma", "AlmaLinux:9")):
        comps, packages = [], []
        for comp in rpms:
            version, epoch = _rpm_version(comp)
            qualifiers = "arch=x86_64" + (f"&epoch={epoch}" if epoch else "") + f"&distro={name}-9.4"
            comps.append({"type": "library", "name": comp["name"], "version": comp["version"],
                          "bom-ref": f"rpm:{comp['name']}", "purl": f"pkg:rpm/{name}/{comp['name']}@{version}?{qualifiers}"})  # fmt: skip
            if comp["name"] in picked:
                packages.append((comp["name"], f"{epoch}:{version}" if epoch else version))
        sboms[name] = out / f"{name}.cdx.json"
        sboms[name].write_text(json.dumps(_sbom(name, name, "9.4", comps)))
        advise(ecosystem, "rpm", packages)
    return sboms, records


def shape_of(record: dict[str, Any]) -> tuple[str, str] | None:
    """(OSV ecosystem, shape) of a record :func:`os_world` wrote, else None."""
    if not str(record.get("id", "")).startswith("STELLA-OS-"):
        return None
    return record["affected"][0]["package"]["ecosystem"], str(record["id"]).split("-", 3)[-1]
