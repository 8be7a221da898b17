"""A real GCS emulator (PyPI gcp-storage-emulator) on 127.0.0.1 for ``gs://`` ledgers."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.services import free_port, stop
from tests.support import VENV_BIN, require

__all__ = ["create_bucket", "gcs_client", "gcs_emulator", "gcs_env", "list_blobs"]


def gcs_env(url: str) -> dict[str, str]:
    """What a process needs to reach the emulator through google-cloud-storage (and Beam's gcsio)."""
    return {"STORAGE_EMULATOR_HOST": url, "NO_GCE_CHECK": "true", "GOOGLE_CLOUD_PROJECT": "test"}


def gcs_client(url: str) -> Any:
    """An anonymous google-cloud-storage client of the emulator at ``url``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        credentials=AnonymousCredentials(), project="test", client_options={"api_endpoint": url}
    )


def create_bucket(url: str, name: str) -> None:
    gcs_client(url).create_bucket(name)


def list_blobs(url: str, bucket: str, prefix: str) -> list[str]:
    return sorted(blob.name for blob in gcs_client(url).list_blobs(bucket, prefix=prefix))


@contextmanager
def gcs_emulator(data_dir: Path) -> Iterator[str]:
    """Start the emulator; yield its base URL (for STORAGE_EMULATOR_HOST); stop it after."""
    binary = VENV_BIN / "gcp-storage-emulator"
    require(binary.exists(), "gcp-storage-emulator (pip install gcp-storage-emulator)")
    port = free_port()
    log = (data_dir / "emulator.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"GCS emulator did not start: {(data_dir / 'emulator.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        stop(process)
        log.close()
