"""Pushing the Trivy DB artifacts to a real registry, Trivy pulling them, and the client's refusals.

The registry is Debian's ``docker-registry`` on 127.0.0.1; the scanner is the real Trivy
0.76. The refusal tests need no network at all: they hand ``push_layout`` an opener
that records every request, and prove the refusal happens before the first one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from stella.adapters.trivy.artifact import (
    TRIVY_DB,
    TRIVY_JAVA_DB,
    TrivyArtifactSpec,
    trivy_metadata,
    write_deterministic_tar_gz,
    write_oci_layout,
)
from stella.adapters.trivy.javadb import java_db_metadata
from stella.errors import BundleIntegrityError, EgressDeniedError, NotFoundError, RemoteError, UsageError
from stella.targets.bundles import push_bundle
from stella.targets.egress import EgressPolicy
from stella.targets.interface import PublishResult, Target, check_egress, egress_allowlist, is_loopback
from stella.targets.oci import OciReference, OciRegistryTarget, push_layout
from tests.services.registry import Registry, run_registry
from tests.services.trivy import AS_OF, JarScenario, build_trivy_dbs, findings, make_scenario, run_trivy
from tests.support import require, require_tool

# -- building the artifacts ------------------------------------------------------------------


def _require_bbolt() -> None:
    require(importlib.util.find_spec("stella.adapters.trivy.bbolt") is not None, "stella bbolt writer")


def build_artifacts(root: Path) -> tuple[JarScenario, dict[str, Path]]:
    """DBs (cache form), layer tarballs and OCI layouts for both Trivy artifacts under ``root``."""
    scenario = make_scenario(root)
    dbs = build_trivy_dbs(scenario, root / "cache")
    # Inside the layer DownloadedAt stays zero: Trivy stamps it after the pull.
    layer_metadata = {
        TRIVY_DB: trivy_metadata(AS_OF, AS_OF + timedelta(hours=24), None),
        TRIVY_JAVA_DB: java_db_metadata(AS_OF),
    }
    out: dict[str, Path] = {}
    for spec, folder in ((TRIVY_DB, dbs["db"]), (TRIVY_JAVA_DB, dbs["java-db"])):
        tarball = root / "artifacts" / spec.title
        write_deterministic_tar_gz(
            tarball, [(spec.db_file, folder / spec.db_file), ("metadata.json", layer_metadata[spec])]
        )
        layout = root / "artifacts" / f"{spec.db_file}.oci"
        write_oci_layout(
            layout,
            layer_path=tarball,
            layer_media_type=spec.layer_media_type,
            title=spec.title,
            annotations={"org.opencontainers.image.created": "2024-05-01T12:00:00Z"},
            tag=spec.tag,
        )
        out[spec.db_file] = layout
    return scenario, out


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    _require_bbolt()
    build_artifacts(tmp_path / "one")
    build_artifacts(tmp_path / "two")
    first, second = tree_digests(tmp_path / "one"), tree_digests(tmp_path / "two")
    assert first == second
    for name in (
        "cache/java-db/trivy-java.db",
        "cache/db/trivy.db",
        "artifacts/db.tar.gz",
        "artifacts/javadb.tar.gz",
    ):
        assert name in first
    assert sum(name.startswith("artifacts/trivy-java.db.oci/blobs/") for name in first) == 3


# -- against the real registry and Trivy ------------------------------------------------------


def _get(registry: Registry, path: str, accept: str | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(registry.url + path)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers, response.read()


def _layout_manifest_digest(layout: Path) -> str:
    digest: str = json.loads((layout / "index.json").read_bytes())["manifests"][0]["digest"]
    return digest


@pytest.mark.registry
@pytest.mark.trivy
@pytest.mark.slow
def test_trivy_pulls_pushed_artifacts_and_finds_what_the_offline_scan_finds(
    oci_registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _require_bbolt()
    trivy = require_tool("trivy")
    scenario, layouts = build_artifacts(tmp_path)
    offline = findings(
        run_trivy(
            trivy,
            [
                "rootfs",
                "--skip-db-update",
                "--skip-java-db-update",
                "--offline-scan",
                "--cache-dir",
                str(tmp_path / "cache"),
                str(scenario.scan_dir),
            ],
            tmp_path / "home",
        )
    )
    assert [(f[1], f[3]) for f in offline] == [(f"{scenario.group}:{scenario.artifact}", scenario.vuln_id)]

    db_ref = f"{oci_registry.address}/stella/pull/trivy-db:2"
    java_ref = f"{oci_registry.address}/stella/pull/trivy-java-db:1"
    db_digest = push_layout(layouts["trivy.db"], db_ref)
    java_digest = push_layout(layouts["trivy-java.db"], java_ref)
    assert db_digest == _layout_manifest_digest(layouts["trivy.db"])
    assert java_digest == _layout_manifest_digest(layouts["trivy-java.db"])

    status, headers, body = _get(
        oci_registry,
        "/v2/stella/pull/trivy-java-db/manifests/1",
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert headers["Docker-Content-Digest"] == java_digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == java_digest

    # Pushing again uploads nothing: the tag already names the manifest (idempotent re-publish).
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stella.targets.oci"):
        assert push_layout(layouts["trivy.db"], db_ref) == db_digest
    assert sum("nothing to push" in message for message in caplog.messages) == 1
    assert not any("uploaded" in message or "already present" in message for message in caplog.messages)

    fresh = tmp_path / "fresh-cache"
    pulled = findings(
        run_trivy(
            trivy,
            [
                "rootfs",
                "--cache-dir",
                str(fresh),
                "--db-repository",
                db_ref,
                "--java-db-repository",
                java_ref,
                str(scenario.scan_dir),
            ],
            tmp_path / "home2",
        )
    )
    assert pulled == offline
    ours = tmp_path / "cache" / "java-db" / "trivy-java.db"
    assert (fresh / "java-db" / "trivy-java.db").read_bytes() == ours.read_bytes()
    assert (fresh / "db" / "trivy.db").read_bytes() == (tmp_path / "cache" / "db" / "trivy.db").read_bytes()


@pytest.mark.registry
def test_chunked_upload_and_target_protocol(oci_registry: Registry, tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar.gz"
    noise = hashlib.shake_256(b"stella chunked upload").digest(64 * 1024)  # incompressible, deterministic
    write_deterministic_tar_gz(layer, [("trivy.db", noise)])
    layout = tmp_path / "layout"
    write_oci_layout(
        layout, layer_path=layer, layer_media_type=TRIVY_DB.layer_media_type, title="db.tar.gz", tag="2"
    )
    size = layer.stat().st_size
    assert size > 3 * 4096
    reference = f"{oci_registry.address}/stella/chunked:2"
    digest = push_layout(layout, reference, chunk_size=4096)
    layer_digest = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    _, _, body = _get(oci_registry, f"/v2/stella/chunked/blobs/{layer_digest}")
    assert body == layer.read_bytes()

    bundle = tmp_path / "bundle"
    shutil.copytree(layout, bundle / "data" / "oci")  # a Trivy bundle publishes its own layout
    target = OciRegistryTarget(reference=f"{oci_registry.address}/stella/target:2")
    assert isinstance(target, Target)
    assert target.publish(bundle) == PublishResult(f"{oci_registry.address}/stella/target@{digest}", digest)
    again = target.publish(bundle)  # the tag already names this manifest: nothing is sent
    assert again.unchanged and again.digest == digest


@pytest.mark.registry
def test_registry_refusal_is_a_remote_error_with_status_and_body(tmp_path: Path) -> None:
    binary = require_tool("docker-registry")
    layer = tmp_path / "layer.tar.gz"
    write_deterministic_tar_gz(layer, [("trivy.db", b"x")])
    write_oci_layout(
        tmp_path / "layout",
        layer_path=layer,
        layer_media_type=TRIVY_DB.layer_media_type,
        title="db.tar.gz",
        tag="2",
    )
    with (
        run_registry(binary, tmp_path / "readonly", readonly=True) as registry,
        pytest.raises(RemoteError) as caught,
    ):
        push_layout(tmp_path / "layout", f"{registry.address}/stella/readonly:2")
    assert caught.value.details["status"] == 405
    assert "Method not allowed" in caught.value.details["body"]
    assert caught.value.code == "ERR_EXPORT_REMOTE"


# -- refusals and protocol details, without any network ----------------------------------------


def _headers(values: dict[str, str]) -> Message:
    message = Message()
    for key, value in values.items():
        message[key] = value
    return message


@dataclass
class _Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _FakeResponse(io.BytesIO):
    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.body)
        self.status = reply.status
        self.headers = _headers(reply.headers)


class RecordingOpener(urllib.request.OpenerDirector):
    """Stands in for the network: records each request and answers via ``handler``."""

    def __init__(self, handler: Callable[[urllib.request.Request], _Reply | Exception]) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[urllib.request.Request] = []

    def open(self, fullurl: Any, data: Any = None, timeout: float | None = None) -> Any:
        assert isinstance(fullurl, urllib.request.Request)
        self.requests.append(fullurl)
        reply = self.handler(fullurl)
        if isinstance(reply, Exception):
            raise reply
        if reply.status >= 400:
            raise urllib.error.HTTPError(
                fullurl.full_url, reply.status, "error", _headers(reply.headers), io.BytesIO(reply.body)
            )
        return _FakeResponse(reply)

    @property
    def urls(self) -> list[str]:
        return [request.full_url for request in self.requests]


def _never(request: urllib.request.Request) -> _Reply:
    raise AssertionError(f"no request expected, got {request.get_method()} {request.full_url}")


@pytest.fixture
def small_layout(tmp_path: Path) -> Path:
    layer = tmp_path / "layer.tar.gz"
    write_deterministic_tar_gz(layer, [("trivy.db", b"db"), ("metadata.json", b"{}")])
    write_oci_layout(
        tmp_path / "layout",
        layer_path=layer,
        layer_media_type=TRIVY_DB.layer_media_type,
        title="db.tar.gz",
        tag="2",
    )
    return tmp_path / "layout"


def test_non_allowlisted_host_is_refused_before_any_connection(small_layout: Path) -> None:
    opener = RecordingOpener(_never)
    with pytest.raises(EgressDeniedError) as caught:
        push_layout(small_layout, "registry.example.com/stella/trivy-db:2", opener=opener)
    assert "registry.example.com" in caught.value.message
    assert caught.value.details["host"] == "registry.example.com"
    with pytest.raises(EgressDeniedError):
        push_layout(
            small_layout,
            "registry.example.com:5000/stella/trivy-db:2",
            allowlist=["registry.example.com:443"],
            opener=opener,
        )
    assert opener.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_loopback_needs_no_allowlist(host: str) -> None:
    assert is_loopback(host)
    check_egress(host, 5000, ())


def test_other_loopback_addresses_need_the_allowlist() -> None:
    """127.8.9.10 never leaves the machine, but may be someone else's listener: named only."""
    assert is_loopback("127.8.9.10")
    with pytest.raises(EgressDeniedError):
        check_egress("127.8.9.10", 5000, ())
    check_egress("127.8.9.10", 5000, ["127.0.0.0/8"])


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "localhost.example.com", "[2001:db8::1]"])
def test_other_hosts_need_the_allowlist(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(EgressDeniedError):
        check_egress(host, None, ())
    check_egress(host, 5000, [host.upper()])


def test_allowlisted_host_is_only_tried_over_https(small_layout: Path) -> None:
    tls_failure = urllib.error.URLError(ssl.SSLError("wrong version number"))
    opener = RecordingOpener(lambda request: tls_failure)
    with pytest.raises(RemoteError) as caught:
        push_layout(
            small_layout,
            "registry.example.com/stella/trivy-db:2",
            allowlist=["registry.example.com"],
            opener=opener,
        )
    assert caught.value.details["status"] is None
    assert opener.urls == ["https://registry.example.com/v2/"]

    permissive = RecordingOpener(lambda request: tls_failure)
    with pytest.raises(RemoteError):
        push_layout(
            small_layout,
            "registry.example.com/stella/trivy-db:2",
            allowlist=["registry.example.com"],
            allow_plain_http=True,
            opener=permissive,
        )
    assert permissive.urls == ["https://registry.example.com/v2/", "http://registry.example.com/v2/"]


def test_token_realm_on_another_host_gets_the_same_egress_rule(small_layout: Path) -> None:
    challenge = _Reply(
        401, {"WWW-Authenticate": 'Bearer realm="https://auth.evil.example/token",service="r"'}
    )
    opener = RecordingOpener(lambda request: challenge)
    with pytest.raises(EgressDeniedError) as caught:
        push_layout(
            small_layout,
            "registry.example.com/stella/trivy-db:2",
            allowlist=["registry.example.com"],
            opener=opener,
        )
    assert "auth.evil.example" in caught.value.message
    assert opener.urls == ["https://registry.example.com/v2/"]


def test_bearer_token_challenge_is_answered(small_layout: Path) -> None:
    manifest_digest = json.loads((small_layout / "index.json").read_bytes())["manifests"][0]["digest"]
    realm = "https://registry.example.com/token"

    def registry(request: urllib.request.Request) -> _Reply:
        if request.full_url.startswith(realm):
            assert request.get_header("Authorization", "").startswith("Basic ")
            return _Reply(200, body=b'{"token": "t0k3n"}')
        if request.get_header("Authorization") != "Bearer t0k3n":
            return _Reply(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="{realm}",service="reg",scope="repository:stella/db:push,pull"'
                },
            )
        if request.get_method() == "HEAD":
            return _Reply(200)  # every blob already there
        if request.get_method() == "PUT" and "/manifests/2" in request.full_url:
            assert request.get_header("Content-type") == "application/vnd.oci.image.manifest.v1+json"
            return _Reply(201, {"Docker-Content-Digest": manifest_digest})
        return _Reply(200)

    opener = RecordingOpener(registry)
    digest = push_layout(
        small_layout,
        "registry.example.com/stella/db:2",
        allowlist=["registry.example.com"],
        credentials=("robot", "secret"),
        opener=opener,
    )
    assert digest == manifest_digest
    token_requests = [url for url in opener.urls if url.startswith(realm)]
    assert token_requests == [f"{realm}?service=reg&scope=repository%3Astella%2Fdb%3Apush%2Cpull"]
    assert opener.requests[-1].get_method() == "PUT"


def test_registry_errors_carry_status_and_error_body(small_layout: Path) -> None:
    body = json.dumps(
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    )

    def registry(request: urllib.request.Request) -> _Reply:
        if request.get_method() == "GET":
            return _Reply(200, body=b"{}")
        return _Reply(403, {"Content-Type": "application/json"}, body.encode())

    with pytest.raises(RemoteError) as caught:
        push_layout(small_layout, "127.0.0.1:1/stella/db:2", opener=RecordingOpener(registry))
    assert caught.value.details["status"] == 403
    assert caught.value.details["errors"] == [
        {"code": "DENIED", "message": "requested access to the resource is denied"}
    ]
    assert "DENIED" in caught.value.message


def test_tampered_layout_is_refused_before_any_connection(small_layout: Path) -> None:
    manifest = json.loads((small_layout / "index.json").read_bytes())["manifests"][0]["digest"]
    layer_digest = json.loads((small_layout / "blobs" / "sha256" / manifest.split(":")[1]).read_bytes())[
        "layers"
    ][0]["digest"]
    (small_layout / "blobs" / "sha256" / layer_digest.split(":")[1]).write_bytes(b"evil")
    with pytest.raises(BundleIntegrityError):
        push_layout(small_layout, "127.0.0.1:1/stella/db:2", opener=RecordingOpener(_never))


@pytest.mark.parametrize(
    "reference",
    [
        "stella/trivy-db:2",
        "library/alpine",
        "127.0.0.1:5000/",
        "127.0.0.1:5000/Upper/case:2",
        "127.0.0.1:5000/a:b:c",
    ],
)
def test_references_must_name_a_registry_and_a_valid_repository(reference: str) -> None:
    with pytest.raises(UsageError):
        OciReference.parse(reference)


def test_reference_parsing() -> None:
    ref = OciReference.parse("[::1]:5000/stella/trivy-db:2")
    assert (ref.host, ref.port, ref.repository, ref.tag, ref.digest) == (
        "[::1]",
        5000,
        "stella/trivy-db",
        "2",
        None,
    )
    ref = OciReference.parse("localhost/db@sha256:" + "a" * 64)
    assert (ref.host, ref.port, ref.tag, ref.digest) == ("localhost", None, None, "sha256:" + "a" * 64)
    assert str(OciReference.parse("Registry.Example.com:443/x/y:1")) == "registry.example.com:443/x/y:1"


def test_artifact_specs_match_trivy() -> None:
    assert (TRIVY_DB.tag, TRIVY_DB.title) == ("2", "db.tar.gz")
    assert (TRIVY_JAVA_DB.tag, TRIVY_JAVA_DB.title) == ("1", "javadb.tar.gz")
    assert isinstance(TRIVY_DB, TrivyArtifactSpec)


def test_push_bundle_asks_the_target_before_reading_the_bundle(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bundle"
    with pytest.raises(EgressDeniedError):
        push_bundle(missing, OciRegistryTarget("registry.example.com/stella/db:2"))
    with pytest.raises(UsageError):
        push_bundle(missing, OciRegistryTarget("127.0.0.1:5000/Not_A_Repo:2"))
    allowed = egress_allowlist(["registry.example.com"], {"STELLA_EGRESS_ALLOWLIST": " a.example , b:1"})
    assert allowed == ("a.example", "b:1", "registry.example.com")
    with pytest.raises(NotFoundError):  # allowed: only now is the bundle looked at (and nothing sent)
        push_bundle(missing, OciRegistryTarget("registry.example.com/stella/db:2", EgressPolicy(allowed)))
