"""Distribution targets against real components: a folder, the GCS emulator, docker-registry.

And the egress rule: a denied host -- here a listener on 127.0.0.2, which is loopback
but not on the default allowlist -- never sees a connection, directly or by redirect.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stella.bundle.verify import verify_bundle
from stella.cli import main
from stella.targets.artifact import BUNDLE_LAYER_MEDIA_TYPE, EXPORT_ID_ANNOTATION
from stella.targets.distribute import RetryPolicy, publish_bundle
from stella.targets.oci import OciRegistryTarget
from tests.integration.conftest import Ran
from tests.services import free_port
from tests.services.gcs import gcs_client
from tests.services.registry import Registry, run_registry
from tests.support import REPO, ingest, preserved_logging, require_tool

# Three exports of one ledger with distinct ids (selectors) and ages (as-of), older to newer.
RUNS = (
    ("vex", "2026-01-01T00:00:00Z"),
    ("sbom", "2026-02-01T00:00:00Z"),
    ("advisory", "2026-03-01T00:00:00Z"),
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> list[Path]:
    ledger = tmp_path_factory.mktemp("ledger")
    ingest(ledger, shared_data / "vex")
    out = tmp_path_factory.mktemp("out")
    made = []
    for kind, as_of in RUNS:  # in this process: one Beam start for all three
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), preserved_logging():
            code = main(
                ["-q", "export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(ledger),
                 "--out", str(out), "--selector", f"kind={kind}", "--as-of", as_of, "--json"]
            )  # fmt: skip
        assert code == 0
        made.append(Path(json.loads(printed.getvalue())["bundle"]))
    assert len({bundle.name for bundle in made}) == 3
    return made


class Listener:
    """A TCP listener that records every connection it accepts (it should get none)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self) -> list[tuple[str, int]]:
        time.sleep(0.3)  # anything in flight lands before we look
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.connections


@pytest.fixture()
def denied() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@contextlib.contextmanager
def redirector(location: str) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers everything with a 307 to ``location``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            self.send_response(307)
            self.send_header("Location", location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _redirect

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_denied_host_never_sees_a_connection(
    cli: Callable[..., Ran], bundles: list[Path], denied: Listener, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    address = f"{denied.host}:{denied.port}"
    # A file target first, then a denied one: the whole publish is refused before any target sends.
    result = cli(
        "export",
        "publish",
        str(bundles[0]),
        "--target",
        f"file://{share}",
        "--target",
        f"oci://{address}/x/y:1",
    )
    assert result.returncode == 8 and "ERR_EXPORT_EGRESS_DENIED" in result.stderr, result.stderr
    assert not share.exists()
    emulated = cli(
        "export", "publish", str(bundles[0]), "--target", "gs://bucket/p",
        env={"STORAGE_EMULATOR_HOST": f"http://{address}"},
    )  # fmt: skip
    assert emulated.returncode == 8 and "127.0.0.2" in emulated.stderr
    # export run refuses before it reads the ledger: no bundle appears either.
    out = tmp_path / "out"
    run = cli(
        "export", "run", "--tenant", "acme", "--profile", "json:raw", "--out", str(out),
        "--ledger", str(tmp_path / "no-ledger"), "--target", f"oci://{address}/x/y:1",
    )  # fmt: skip
    assert run.returncode == 8 and not out.exists()
    create = cli(
        "export", "schedule", "create", "nightly", "--tenant", "acme", "--profile", "json:raw",
        "--cron", "0 2 * * *", "--target", f"oci://{address}/x/y:1", "--store", f"sqlite:///{tmp_path / 's.db'}",
    )  # fmt: skip
    assert create.returncode == 8
    assert denied.close() == []
    # Named on the allowlist, the same host is contacted (the listener is no registry, so it fails).
    allowed = Listener()
    named = cli(
        "export", "publish", str(bundles[0]), "--target", f"oci://{allowed.host}:{allowed.port}/x/y:1",
        "--allow-host", allowed.host, "--retries", "1",
    )  # fmt: skip
    assert named.returncode == 13 and allowed.close() != []


def test_redirects_to_a_denied_host_are_refused(
    cli: Callable[..., Ran], bundles: list[Path], denied: Listener
) -> None:
    with redirector(f"http://{denied.host}:{denied.port}") as front:
        pushed = cli("export", "publish", str(bundles[0]), "--target", f"oci://{front}/x/y:1")
        assert pushed.returncode == 8 and "127.0.0.2" in pushed.stderr, pushed.stderr
        uploaded = cli(
            "export", "publish", str(bundles[0]), "--target", "gs://bucket/p",
            env={"STORAGE_EMULATOR_HOST": f"http://{front}"},
        )  # fmt: skip
        assert uploaded.returncode == 8 and "127.0.0.2" in uploaded.stderr, uploaded.stderr
    assert denied.close() == []


def test_filesystem_target_is_idempotent_and_keeps_the_newest(
    cli: Callable[..., Ran], bundles: list[Path], tmp_path: Path
) -> None:
    share = tmp_path / "share"
    target = f"file://{share}?keep=2"
    first = cli("export", "publish", str(bundles[0]), "--target", target, "--json", check=True)
    assert json.loads(first.stdout)["targets"][0]["status"] == "published"
    again = cli("export", "publish", str(bundles[0]), "--target", target, "--json", check=True)
    assert json.loads(again.stdout)["targets"][0]["status"] == "unchanged"
    for bundle in (bundles[2], bundles[1]):  # newest first: retention orders by generatedAt, not arrival
        cli("export", "publish", str(bundle), "--target", target, check=True)
    assert sorted(p.name for p in share.iterdir()) == sorted([bundles[1].name, bundles[2].name])
    for name in (bundles[1].name, bundles[2].name):
        assert verify_bundle(share / name).report.ok


_SLOW_PUBLISH = """
import shutil, sys, time
from pathlib import Path
from stella.targets.filesystem import FilesystemTarget

copy = shutil.copyfileobj
def copy_then_stall(src, dst, length=0):  # the crash window: some files copied, not all
    copy(src, dst, length)
    print("copying", flush=True)
    time.sleep(120)
shutil.copyfileobj = copy_then_stall
FilesystemTarget(Path(sys.argv[1])).publish(Path(sys.argv[2]))
"""


def test_sigkill_mid_publish_leaves_the_previous_bundle_intact(
    cli: Callable[..., Ran], bundles: list[Path], tmp_path: Path
) -> None:
    share = tmp_path / "share"
    cli("export", "publish", str(bundles[0]), "--target", f"file://{share}", check=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PUBLISH, str(share), str(bundles[1])],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"copying\n"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    visible = sorted(p.name for p in share.iterdir() if not p.name.startswith("."))
    assert visible == [bundles[0].name]  # the new bundle is absent, not half there
    assert verify_bundle(share / bundles[0].name).report.ok
    assert [p.name for p in share.iterdir() if p.name.startswith(".stella-staging-")]  # the crash's leftovers
    cli("export", "publish", str(bundles[1]), "--target", f"file://{share}", check=True)
    assert verify_bundle(share / bundles[1].name).report.ok


@pytest.mark.gcs
def test_gcs_target_uploads_a_bundle_that_verifies_after_download(
    cli: Callable[..., Ran], bundles: list[Path], gcs: str, tmp_path: Path
) -> None:
    client = gcs_client(gcs)
    client.create_bucket("exports")
    env = {"STORAGE_EMULATOR_HOST": gcs}
    first = cli(
        "export", "publish", str(bundles[0]), "--target", "gs://exports/acme/nightly", "--json", env=env, check=True
    )  # fmt: skip
    (result,) = json.loads(first.stdout)["targets"]
    export_id = bundles[0].name
    assert result["status"] == "published" and result["location"] == f"gs://exports/acme/nightly/{export_id}/"
    downloaded = tmp_path / export_id
    blobs = list(client.list_blobs("exports", prefix=f"acme/nightly/{export_id}/"))
    assert {b.metadata["sha256"] for b in blobs}  # each object carries its SHA-256
    for blob in blobs:
        path = downloaded / blob.name.split(f"{export_id}/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(path))
    verified = cli("export", "verify", str(downloaded))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = cli(
        "export", "publish", str(bundles[0]), "--target", "gs://exports/acme/nightly", "--json", env=env, check=True
    )  # fmt: skip
    assert json.loads(again.stdout)["targets"][0]["status"] == "unchanged"
    # An interrupted upload (an object missing) is completed by the next publish.
    client.bucket("exports").blob(f"acme/nightly/{export_id}/export.json").delete()
    resumed = cli(
        "export", "publish", str(bundles[0]), "--target", "gs://exports/acme/nightly", "--json", env=env, check=True
    )  # fmt: skip
    assert json.loads(resumed.stdout)["targets"][0]["status"] == "published"


def _registry_get(registry: Registry, path: str, accept: str | None = None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(registry.url + path)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


@pytest.mark.registry
def test_any_bundle_goes_to_a_registry_as_an_artifact_that_verifies_after_pull(
    cli: Callable[..., Ran], bundles: list[Path], oci_registry: Registry, tmp_path: Path
) -> None:
    reference = f"{oci_registry.address}/stella/json-raw:acme"
    pushed = cli("export", "publish", str(bundles[0]), "--target", f"oci://{reference}", "--json", check=True)
    (result,) = json.loads(pushed.stdout)["targets"]
    headers, body = _registry_get(
        oci_registry, "/v2/stella/json-raw/manifests/acme", "application/vnd.oci.image.manifest.v1+json"
    )
    assert headers["Docker-Content-Digest"] == result["digest"]
    manifest = json.loads(body)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == BUNDLE_LAYER_MEDIA_TYPE
    assert manifest["annotations"][EXPORT_ID_ANNOTATION] == bundles[0].name
    _, archive = _registry_get(oci_registry, f"/v2/stella/json-raw/blobs/{layer['digest']}")
    pulled = tmp_path / f"{bundles[0].name}.tar.zst"
    pulled.write_bytes(archive)
    verified = cli("export", "verify", str(pulled))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The artifact is deterministic: publishing the same bundle again changes nothing.
    again = cli("export", "publish", str(bundles[0]), "--target", f"oci://{reference}", "--json", check=True)
    assert json.loads(again.stdout)["targets"][0] == {**result, "status": "unchanged"}


@pytest.mark.registry
def test_transient_failures_are_retried_with_backoff(bundles: list[Path], tmp_path: Path) -> None:
    """The registry is down for the first attempts and comes up during the backoff."""
    binary = require_tool("docker-registry")
    port = free_port()
    sleeps: list[float] = []
    with contextlib.ExitStack() as stack:

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 2:
                stack.enter_context(run_registry(binary, tmp_path / "late", port=port))

        target = OciRegistryTarget(f"127.0.0.1:{port}/stella/late:1")
        (result,) = publish_bundle(bundles[0], [target], retry=RetryPolicy(attempts=4, sleep=sleep))
        assert (result.status, result.attempts, sleeps) == ("published", 3, [1.0, 2.0])
        (gave_up,) = publish_bundle(
            bundles[0],
            [OciRegistryTarget(f"127.0.0.1:{free_port()}/stella/never:1")],
            retry=RetryPolicy(attempts=3, sleep=sleeps.append),
        )
        assert gave_up.status == "failed" and gave_up.attempts == 3 and gave_up.error is not None
        assert gave_up.error["code"] == "ERR_EXPORT_REMOTE"


@pytest.mark.gcs
def test_gcs_uploads_large_files_in_resumable_chunks_and_checks_them(gcs: str, tmp_path: Path) -> None:
    """A payload several chunks long goes up through one resumable session and comes back identical."""
    import hashlib

    from stella.targets.gcs import GcsTarget

    client = gcs_client(gcs)
    client.create_bucket("chunked")
    bundle = tmp_path / "acme-json-raw-000000000001"
    (bundle / "data").mkdir(parents=True)
    payload = os.urandom(3 * 256 * 1024 + 12345)  # three full 256 KiB chunks and a partial one
    (bundle / "data" / "big.bin").write_bytes(payload)
    (bundle / "export.json").write_text('{"exportId": "acme-json-raw-000000000001"}')
    target = GcsTarget("chunked", "p", chunk_size=256 * 1024, environ={"STORAGE_EMULATOR_HOST": gcs})
    result = target.publish(bundle)
    assert not result.unchanged
    blob = client.bucket("chunked").get_blob("p/acme-json-raw-000000000001/data/big.bin")
    assert blob.size == len(payload) and blob.metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert hashlib.sha256(blob.download_as_bytes()).digest() == hashlib.sha256(payload).digest()
    assert target.publish(bundle).unchanged  # all objects present with the same digests: nothing sent
