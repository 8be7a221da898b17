"""Encryption modes: real ``age -d`` opens what we produce, AES-GCM streams resist tampering.

Every key is generated here. Memory bounds are asserted on allocations (tracemalloc) or
peak RSS, never on wall-clock time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stella import canonical
from stella.encryption import aesgcm
from stella.encryption.age_mode import (
    age_plan,
    decrypt_file_age,
    decrypt_stream_age,
    encrypt_file_age,
    encrypt_stream_age,
)
from stella.encryption.interface import (
    AES_GCM_MODE,
    AGE_KIND,
    RSA_OAEP_KIND,
    DecryptionError,
    EncryptionPlan,
    Identity,
    Recipient,
)
from stella.encryption.keywrap import WRAPPERS, unwrap_with_identity, wrap_for_recipients
from stella.encryption.recipients import parse_identities, parse_recipient
from stella.errors import BundleIntegrityError, NotFoundError, UsageError
from tests.support import REPO, require, require_tool

pyrage = pytest.importorskip("pyrage")

RUN = "run-01J9Z"
PATH = "data/advisories/osv-0001.jsonl.zst"
SMALL_CHUNK = 4096


# --- keys -------------------------------------------------------------------------------


class AgeKey:
    """An age X25519 key pair, written as the identity file ``age -d -i`` reads."""

    def __init__(self, folder: Path, name: str) -> None:
        generated = pyrage.x25519.Identity.generate()
        self.secret = str(generated)
        self.public = str(generated.to_public())
        self.file = folder / f"{name}.txt"
        self.file.write_text(f"# public key: {self.public}\n{self.secret}\n")
        self.recipient = parse_recipient(self.public)
        self.identity = parse_identities(self.file.read_bytes(), source=str(self.file))[0]


@pytest.fixture()
def alice(tmp_path: Path) -> AgeKey:
    return AgeKey(tmp_path, "alice")


@pytest.fixture()
def bob(tmp_path: Path) -> AgeKey:
    return AgeKey(tmp_path, "bob")


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = folder / "key.pem"
    public = folder / "key.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def age_cli_decrypt(ciphertext: Path, key_file: Path) -> bytes:
    """The real age binary, as an operator on the far side would run it."""
    age = require_tool("age")
    done = subprocess.run([age, "-d", "-i", str(key_file), str(ciphertext)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- recipients and identities -----------------------------------------------------------


def test_parse_age_recipient_and_reject_typos(alice: AgeKey) -> None:
    assert alice.recipient == Recipient(AGE_KIND, alice.public)
    flipped = alice.public[:-1] + ("q" if alice.public[-1] != "q" else "p")
    with pytest.raises(UsageError, match="checksum"):
        parse_recipient(flipped)
    with pytest.raises(UsageError, match="58 lowercase bech32"):
        parse_recipient(alice.public.upper().replace("AGE1", "age1"))


def test_unknown_recipient_form_lists_accepted_forms() -> None:
    with pytest.raises(UsageError) as caught:
        parse_recipient("ssh-ed25519 AAAA…")
    assert "age1" in caught.value.message and "rsa:PATH" in caught.value.message
    assert caught.value.code == "ERR_EXPORT_USAGE"


def test_parse_rsa_recipient_records_fingerprint_not_path(rsa_key: tuple[Path, Path]) -> None:
    recipient = parse_recipient(f"rsa:{rsa_key[1]}")
    assert recipient.kind == RSA_OAEP_KIND
    assert recipient.id.startswith("sha256:") and str(rsa_key[1]) not in recipient.id
    assert (
        recipient.id == WRAPPERS[RSA_OAEP_KIND].recipient_of(parse_identities(rsa_key[0].read_bytes())[0]).id
    )


def test_rsa_recipient_refuses_small_and_non_rsa_keys(tmp_path: Path) -> None:
    small = tmp_path / "small.pem"
    small.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UsageError, match="2048-bit minimum"):
        parse_recipient(f"rsa:{small}")
    ecpub = tmp_path / "ec.pem"
    ecpub.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UsageError, match="not an RSA public key"):
        parse_recipient(f"rsa:{ecpub}")
    with pytest.raises(UsageError, match="cannot read"):
        parse_recipient(f"rsa:{tmp_path / 'missing.pem'}")


def test_identity_repr_hides_secret(alice: AgeKey) -> None:
    assert alice.secret not in repr(alice.identity)
    with pytest.raises(UsageError, match="line 1"):
        parse_identities(b"AGE-SECRET-KEY-1NOPE\n")
    with pytest.raises(UsageError, match="no identity"):
        parse_identities(b"# only a comment\n")


# --- age mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 300_000])
def test_age_cli_decrypts_our_files_for_every_recipient(
    tmp_path: Path, alice: AgeKey, bob: AgeKey, size: int
) -> None:
    plain = tmp_path / "shard.jsonl.zst"
    plain.write_bytes(random.Random(size).randbytes(size))
    encrypted = tmp_path / "shard.jsonl.zst.age"
    result = encrypt_file_age(plain, encrypted, [bob.recipient, alice.recipient])
    data = plain.read_bytes()
    assert result.plaintext_digest == sha(data) and result.plaintext_bytes == size
    assert result.ciphertext_digest == sha(encrypted.read_bytes())
    assert result.ciphertext_bytes == encrypted.stat().st_size
    for key in (alice, bob):
        assert age_cli_decrypt(encrypted, key.file) == data
    back = tmp_path / "back"
    assert decrypt_file_age(encrypted, back, [bob.identity]) == result
    assert back.read_bytes() == data


def test_age_output_is_randomised_but_plaintext_digest_is_stable(tmp_path: Path, alice: AgeKey) -> None:
    plain = tmp_path / "p"
    plain.write_bytes(b"same plaintext\n" * 100)
    first = encrypt_file_age(plain, tmp_path / "a.age", [alice.recipient])
    second = encrypt_file_age(plain, tmp_path / "b.age", [alice.recipient])
    assert first.plaintext_digest == second.plaintext_digest
    assert first.ciphertext_digest != second.ciphertext_digest


def test_we_decrypt_what_the_age_cli_encrypts(tmp_path: Path, alice: AgeKey) -> None:
    age = require_tool("age")
    plain = tmp_path / "p"
    plain.write_bytes(b"from the far side\n" * 5000)
    for armor in ([], ["-a"]):
        encrypted = tmp_path / f"cli{len(armor)}.age"
        subprocess.run([age, *armor, "-r", alice.public, "-o", str(encrypted), str(plain)], check=True)
        out = io.BytesIO()
        decrypt_stream_age(io.BytesIO(encrypted.read_bytes()), out, [alice.identity])
        assert out.getvalue() == plain.read_bytes()


def test_age_wrong_key_tamper_and_truncation(tmp_path: Path, alice: AgeKey, bob: AgeKey) -> None:
    plain = tmp_path / "p"
    plain.write_bytes(random.Random(7).randbytes(200_000))
    encrypted = tmp_path / "p.age"
    encrypt_file_age(plain, encrypted, [alice.recipient])
    out = tmp_path / "out"
    with pytest.raises(NotFoundError):
        decrypt_file_age(encrypted, out, [bob.identity])
    data = bytearray(encrypted.read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "flipped.age").write_bytes(data)
    with pytest.raises(DecryptionError) as caught:
        decrypt_file_age(tmp_path / "flipped.age", out, [alice.identity])
    assert caught.value.code == "ERR_EXPORT_CHECKSUM"
    (tmp_path / "short.age").write_bytes(encrypted.read_bytes()[:-100])
    with pytest.raises(DecryptionError):
        decrypt_file_age(tmp_path / "short.age", out, [alice.identity])
    assert not out.exists() and list(tmp_path.glob(".out.*")) == []


def test_age_mode_refuses_other_recipient_kinds(tmp_path: Path, rsa_key: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match="age X25519 recipients only"):
        encrypt_stream_age(io.BytesIO(b"x"), io.BytesIO(), [parse_recipient(f"rsa:{rsa_key[1]}")])


def test_age_plan_records_sorted_recipients(alice: AgeKey, bob: AgeKey) -> None:
    one = age_plan([alice.recipient, bob.recipient]).to_provenance()
    two = age_plan([bob.recipient, alice.recipient]).to_provenance()
    assert canonical.dumps(one) == canonical.dumps(two)
    assert [r["recipient"] for r in one["recipients"]] == sorted([alice.public, bob.public])
    assert one["mode"] == "age" and one["format"] == "age-encryption.org/v1"


def test_age_streams_in_bounded_memory(tmp_path: Path) -> None:
    """256 MiB through pyrage grows peak RSS by a few MB, not by the file size."""
    require(Path("/proc/self/status").exists(), "Linux /proc for peak RSS")
    script = textwrap.dedent(
        """
        import io
        import pyrage
        from stella.encryption.age_mode import encrypt_stream_age
        from stella.encryption.recipients import parse_recipient

        class Source(io.RawIOBase):
            def __init__(self, total):
                self.left = total
                self.block = bytes(range(256)) * 4096
            def readable(self):
                return True
            def readinto(self, buf):
                n = min(len(buf), self.left, len(self.block))
                buf[:n] = self.block[:n]
                self.left -= n
                return n

        class Sink:
            def write(self, data):
                return len(data)

        def high_water_kib():
            # VmHWM belongs to this address space; ru_maxrss would carry the parent's peak over exec.
            status = open("/proc/self/status").read()
            return int(status.split("VmHWM:")[1].split()[0])

        recipient = parse_recipient(str(pyrage.x25519.Identity.generate().to_public()))
        before = high_water_kib()
        result = encrypt_stream_age(io.BufferedReader(Source(256 << 20)), Sink(), [recipient])
        print(result.plaintext_bytes, high_water_kib() - before)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=str(REPO)
    )
    size, grown_kib = map(int, done.stdout.split())
    assert size == 256 << 20
    assert grown_kib < 32 * 1024, f"peak RSS grew by {grown_kib} KiB for a 256 MiB stream"


# --- aes-gcm streams -----------------------------------------------------------------------


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def encrypt(data: bytes, *, dek: bytes, run_id: str = RUN, path: str = PATH, seed: int = 1) -> bytes:
    out = io.BytesIO()
    aesgcm.encrypt_stream(
        io.BytesIO(data), out, dek=dek, run_id=run_id, path=path, chunk_size=SMALL_CHUNK, random=seeded(seed)
    )
    return out.getvalue()


def decrypt(blob: bytes, *, dek: bytes, run_id: str = RUN, path: str = PATH) -> bytes:
    out = io.BytesIO()
    aesgcm.decrypt_stream(io.BytesIO(blob), out, dek=dek, run_id=run_id, path=path)
    return out.getvalue()


DEK = aesgcm.new_dek(seeded(42))
OTHER_DEK = aesgcm.new_dek(seeded(43))


@pytest.mark.parametrize(
    "size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK, 50_000]
)
def test_aesgcm_round_trip_and_layout(size: int) -> None:
    data = random.Random(size).randbytes(size)
    blob = encrypt(data, dek=DEK)
    assert decrypt(blob, dek=DEK) == data
    chunks = max(1, -(-size // SMALL_CHUNK))
    assert len(blob) == aesgcm.HEADER_SIZE + size + 16 * chunks
    assert blob[:8] == aesgcm.MAGIC and blob[8] == 1 and blob[9] == 1
    assert int.from_bytes(blob[10:14], "big") == SMALL_CHUNK
    salt_and_prefix = seeded(1)(32 + 7)
    assert blob[14:53] == salt_and_prefix


def test_aesgcm_is_reproducible_only_with_injected_randomness() -> None:
    data = b"advisory\n" * 2000
    assert encrypt(data, dek=DEK, seed=5) == encrypt(data, dek=DEK, seed=5)
    assert encrypt(data, dek=DEK, seed=5) != encrypt(data, dek=DEK, seed=6)


def test_aesgcm_result_digests_match_bytes() -> None:
    data = random.Random(3).randbytes(20_000)
    out = io.BytesIO()
    result = aesgcm.encrypt_stream(
        io.BytesIO(data), out, dek=DEK, run_id=RUN, path=PATH, chunk_size=SMALL_CHUNK, random=seeded(2)
    )
    assert result.plaintext_digest == sha(data) and result.plaintext_bytes == len(data)
    assert result.ciphertext_digest == sha(out.getvalue()) and result.ciphertext_bytes == len(out.getvalue())
    back = io.BytesIO()
    assert aesgcm.decrypt_stream(io.BytesIO(out.getvalue()), back, dek=DEK, run_id=RUN, path=PATH) == result


def _segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[aesgcm.HEADER_SIZE :]
    step = SMALL_CHUNK + 16
    return blob[: aesgcm.HEADER_SIZE], [body[i : i + step] for i in range(0, len(body), step)]


def _flip(blob: bytes, at: int) -> bytes:
    data = bytearray(blob)
    data[at] ^= 0x80
    return bytes(data)


def _tampered() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """name -> (ciphertext, decrypt overrides); each must fail with DecryptionError."""
    data = random.Random(11).randbytes(3 * SMALL_CHUNK + 100)
    blob = encrypt(data, dek=DEK)
    header, seg = _segments(blob)
    other = encrypt(data, dek=DEK, seed=99)
    return {
        "flipped body byte": (_flip(blob, aesgcm.HEADER_SIZE + 10), {}),
        "flipped tag byte": (_flip(blob, aesgcm.HEADER_SIZE + SMALL_CHUNK + 3), {}),
        "flipped last byte": (_flip(blob, len(blob) - 1), {}),
        "flipped salt": (_flip(blob, 20), {}),
        "flipped nonce prefix": (_flip(blob, 50), {}),
        "final chunk dropped": (header + b"".join(seg[:-1]), {}),
        "final chunk cut short": (blob[:-5], {}),
        "chunks reordered": (header + seg[1] + seg[0] + b"".join(seg[2:]), {}),
        "chunk duplicated": (header + seg[0] + b"".join(seg), {}),
        "data appended": (blob + b"\x00" * 20, {}),
        "header swapped from another file": (other[: aesgcm.HEADER_SIZE] + blob[aesgcm.HEADER_SIZE :], {}),
        "only the header": (header, {}),
        "wrong path": (blob, {"path": "data/advisories/osv-0002.jsonl.zst"}),
        "wrong run": (blob, {"run_id": "run-other"}),
        "wrong key": (blob, {"dek": OTHER_DEK}),
    }


@pytest.mark.parametrize("case", sorted(_tampered()))
def test_aesgcm_tamper_matrix(case: str) -> None:
    blob, overrides = _tampered()[case]
    kwargs: dict[str, Any] = {"dek": DEK, "run_id": RUN, "path": PATH, **overrides}
    with pytest.raises(DecryptionError) as caught:
        decrypt(blob, **kwargs)
    assert isinstance(caught.value, BundleIntegrityError)
    assert caught.value.code == "ERR_EXPORT_CHECKSUM"
    assert PATH in caught.value.message or kwargs["path"] in caught.value.message


def test_aesgcm_truncation_is_named_as_such() -> None:
    blob = encrypt(random.Random(1).randbytes(2 * SMALL_CHUNK + 7), dek=DEK)
    header, seg = _segments(blob)
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(header + b"".join(seg[:-1]), dek=DEK)
    with pytest.raises(DecryptionError, match="bad magic"):
        decrypt(b"NOTSTELL" + blob[8:], dek=DEK)


class _Trickle(io.RawIOBase):
    """A pipe-like source: at most 1000 bytes per read, like a socket under load."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_aesgcm_handles_short_reads_and_checks_random_source() -> None:
    data = random.Random(9).randbytes(5 * SMALL_CHUNK + 11)
    blob = encrypt(data, dek=DEK)
    out = io.BytesIO()
    aesgcm.decrypt_stream(cast(BinaryIO, _Trickle(blob)), out, dek=DEK, run_id=RUN, path=PATH)
    assert out.getvalue() == data
    again = io.BytesIO()
    aesgcm.encrypt_stream(
        cast(BinaryIO, _Trickle(data)),
        again,
        dek=DEK,
        run_id=RUN,
        path=PATH,
        chunk_size=SMALL_CHUNK,
        random=seeded(1),
    )
    assert again.getvalue() == blob
    with pytest.raises(UsageError, match="wrong number of bytes"):
        aesgcm.encrypt_stream(
            io.BytesIO(b"x"), io.BytesIO(), dek=DEK, run_id=RUN, path=PATH, random=lambda n: b"\0"
        )


def test_aesgcm_rejects_ambiguous_context() -> None:
    with pytest.raises(UsageError):
        encrypt(b"x", dek=DEK, run_id="a:b")
    with pytest.raises(UsageError):
        encrypt(b"x", dek=DEK, path="/abs/path")


def test_decrypt_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    plain = tmp_path / "p"
    plain.write_bytes(random.Random(5).randbytes(100_000))
    enc = tmp_path / "p.aesgcm"
    aesgcm.encrypt_file(plain, enc, dek=DEK, run_id=RUN, path=PATH, chunk_size=SMALL_CHUNK)
    out = tmp_path / "out"
    aesgcm.decrypt_file(enc, out, dek=DEK, run_id=RUN, path=PATH)
    assert out.read_bytes() == plain.read_bytes()
    out.unlink()
    enc.write_bytes(enc.read_bytes()[: -(SMALL_CHUNK + 16)])
    with pytest.raises(DecryptionError):
        aesgcm.decrypt_file(enc, out, dek=DEK, run_id=RUN, path=PATH)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "p.aesgcm"]


class _Pattern(io.RawIOBase):
    """``total`` bytes of a non-repeating-looking pattern, made on the fly (no file, no big buffer)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self._left = total
        self._block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self._left, len(self._block))
        buffer[:size] = self._block[:size]
        self._n += 1
        stamp = min(8, size)  # every block differs, so nothing upstream can deduplicate
        buffer[:stamp] = self._n.to_bytes(8, "big")[:stamp]
        self._left -= size
        return size


class _HashSink:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.bytes += len(data)
        return len(data)


def test_aesgcm_streams_large_file_in_bounded_memory(tmp_path: Path) -> None:
    """A 256 MiB file encrypts and decrypts with peak Python allocations of a few chunks."""
    total = 256 << 20
    chunk = aesgcm.DEFAULT_CHUNK_SIZE
    encrypted = tmp_path / "big.aesgcm"
    tracemalloc.start()
    try:
        with encrypted.open("wb") as out:
            source = io.BufferedReader(_Pattern(total))
            result = aesgcm.encrypt_stream(source, out, dek=DEK, run_id=RUN, path=PATH)
        _, enc_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = _HashSink()
        with encrypted.open("rb") as src:
            back = aesgcm.decrypt_stream(src, sink, dek=DEK, run_id=RUN, path=PATH)  # type: ignore[arg-type]
        _, dec_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.plaintext_bytes == total == sink.bytes
    assert back.plaintext_digest == result.plaintext_digest == "sha256:" + sink.hash.hexdigest()
    assert encrypted.stat().st_size == result.ciphertext_bytes
    assert enc_peak < 6 * chunk, f"encrypt peak {enc_peak} bytes for a {total}-byte file"
    assert dec_peak < 6 * chunk, f"decrypt peak {dec_peak} bytes for a {total}-byte file"


# --- wrapped data keys -----------------------------------------------------------------------


def test_wrapped_dek_opens_with_age_cli_rsa_and_openssl(
    tmp_path: Path, alice: AgeKey, bob: AgeKey, rsa_key: tuple[Path, Path]
) -> None:
    rsa_recipient = parse_recipient(f"rsa:{rsa_key[1]}")
    wrapped = wrap_for_recipients(DEK, [rsa_recipient, bob.recipient, alice.recipient])
    assert [w.sort_key for w in wrapped] == sorted(w.sort_key for w in wrapped)
    assert [w.recipient.kind for w in wrapped] == ["age", "age", "rsa-oaep"]
    rsa_identity = parse_identities(rsa_key[0].read_bytes())[0]
    for identity in (alice.identity, bob.identity, rsa_identity):
        assert unwrap_with_identity(wrapped, [identity]) == DEK
    for key in (alice, bob):
        match = next(w for w in wrapped if w.recipient.id == key.public)
        (tmp_path / "dek.age").write_bytes(match.wrapped)
        assert age_cli_decrypt(tmp_path / "dek.age", key.file) == DEK
    openssl = require_tool("openssl")
    (tmp_path / "dek.rsa").write_bytes(wrapped[-1].wrapped)
    done = subprocess.run(
        [openssl, "pkeyutl", "-decrypt", "-inkey", str(rsa_key[0]), "-in", str(tmp_path / "dek.rsa"),
         "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == DEK


def test_unwrap_errors(alice: AgeKey, bob: AgeKey, rsa_key: tuple[Path, Path]) -> None:
    wrapped = wrap_for_recipients(DEK, [alice.recipient])
    with pytest.raises(NotFoundError):
        unwrap_with_identity(wrapped, [bob.identity])
    broken = [type(wrapped[0])(wrapped[0].recipient, wrapped[0].algorithm, _flip(wrapped[0].wrapped, -3))]
    with pytest.raises(DecryptionError):
        unwrap_with_identity(broken, [alice.identity])
    rsa_recipient = parse_recipient(f"rsa:{rsa_key[1]}")
    rsa_wrapped = wrap_for_recipients(DEK, [rsa_recipient])
    rsa_broken = [type(w)(w.recipient, w.algorithm, _flip(w.wrapped, 5)) for w in rsa_wrapped]
    with pytest.raises(DecryptionError):
        unwrap_with_identity(rsa_broken, parse_identities(rsa_key[0].read_bytes()))
    with pytest.raises(UsageError, match="twice"):
        wrap_for_recipients(DEK, [alice.recipient, alice.recipient])
    with pytest.raises(UsageError, match="32 bytes"):
        wrap_for_recipients(b"short", [alice.recipient])


def test_end_to_end_envelope_recorded_in_provenance(
    tmp_path: Path, alice: AgeKey, rsa_key: tuple[Path, Path]
) -> None:
    """Producer: DEK, wrap, encrypt, record. Consumer: read provenance, unwrap, decrypt."""
    dek = aesgcm.new_dek()
    rsa_recipient = parse_recipient(f"rsa:{rsa_key[1]}")
    plan = aesgcm.plan_for(dek, [rsa_recipient, alice.recipient])
    plain = tmp_path / "shard"
    plain.write_bytes(b'{"id":"GHSA-xxxx"}\n' * 10_000)
    enc = tmp_path / "shard.aesgcm"
    produced = aesgcm.encrypt_file(plain, enc, dek=dek, run_id=RUN, path="data/shard")
    recorded = json.loads(canonical.dumps(plan.to_provenance()))
    assert recorded["mode"] == AES_GCM_MODE and recorded["chunkSize"] == aesgcm.DEFAULT_CHUNK_SIZE
    assert recorded["aadFormat"] == aesgcm.AAD_FORMAT and recorded["nonceFormat"] == aesgcm.NONCE_FORMAT
    assert [r["kind"] for r in recorded["recipients"]] == ["age", "rsa-oaep"]
    # Integrity without a key: the ciphertext digest matches the shipped bytes.
    assert produced.ciphertext_digest == sha(enc.read_bytes())
    wrapped = [
        type(plan.wrapped_keys[0])(
            Recipient(r["kind"], r["recipient"]), r["algorithm"], base64.b64decode(r["wrappedKey"])
        )
        for r in recorded["recipients"]
    ]
    recovered = unwrap_with_identity(wrapped, [alice.identity])
    out = tmp_path / "back"
    consumed = aesgcm.decrypt_file(enc, out, dek=recovered, run_id=RUN, path="data/shard")
    assert consumed.plaintext_digest == produced.plaintext_digest == sha(plain.read_bytes())


def test_plan_validation(alice: AgeKey) -> None:
    with pytest.raises(UsageError, match="at least one"):
        EncryptionPlan("age", (), "", "", 65536, "age-encryption.org/v1")
    with pytest.raises(UsageError, match="unknown encryption mode"):
        EncryptionPlan("rot13", (alice.recipient,), "", "", 1, "x")
    with pytest.raises(UsageError, match="one wrapped key per recipient"):
        EncryptionPlan("aes-gcm", (alice.recipient,), "", "", 1, "x")


def test_identity_kind_mismatch_is_reported(alice: AgeKey) -> None:
    with pytest.raises(UsageError, match="no key wrapper"):
        unwrap_with_identity([], [Identity("pgp", b"x")])
