"""C2PA content credentials: signing, reading back, trust, tampering, the user's own chain, threads."""

from __future__ import annotations

import datetime
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

from aigc_studio import __version__
from aigc_studio.labels.aigc import SOURCE_CREATED, SOURCE_EDITED, TC260_NS, AigcLabel
from aigc_studio.labels.credentials import Credentials, CredentialsError, read_credentials

FORMATS = ["png", "jpeg", "webp"]
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
STUDIO_SIGNER = "AIGC Studio signer, AIGC Studio"


def picture(size: int = 64) -> Image.Image:
    """A deterministic picture with detail, so every format has real image data to hash."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def xmp_packet(produce_id: str) -> str:
    """A TC260 AIGC XMP packet as the studio writes it before signing (META's build_xmp makes the real one)."""
    label = AigcLabel("AIGC-Studio", produce_id).to_json().replace('"', "&quot;")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:TC260="{TC260_NS}" TC260:AIGC="{label}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def encode(image: Image.Image, fmt: str, xmp: str | None = None) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", "a red fox, Steps: 2, Seed: 1")
        if xmp:
            info.add_itxt("XML:com.adobe.xmp", xmp)
        image.save(out, "PNG", pnginfo=info)
    else:
        image.save(out, PIL_FORMAT[fmt], quality=90, **({"xmp": xmp.encode()} if xmp else {}))
    return out.getvalue()


def xmp_of(data: bytes) -> str | None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        found = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
    return found.decode() if isinstance(found, bytes) else found


@pytest.fixture
def creds(tmp_path) -> Credentials:
    credentials = Credentials(tmp_path / "c2pa")
    credentials.ensure()
    return credentials


@pytest.mark.parametrize("fmt", FORMATS)
def test_created_manifest_round_trips_and_keeps_the_xmp_written_before_it(creds, fmt):
    packet = xmp_packet("img-7")
    unsigned = encode(picture(), fmt, packet)
    signed = creds.sign(unsigned, fmt, title=f"img-7.{fmt}", source_type=SOURCE_CREATED, produce_id="img-7")

    state = read_credentials(signed, fmt)
    assert state.state == "valid", state.reason
    assert state.actions == ["c2pa.created"]
    assert state.source_type == SOURCE_CREATED
    assert state.signer == STUDIO_SIGNER
    assert state.claim_generator == f"AIGC Studio {__version__}"
    assert state.title == f"img-7.{fmt}"
    assert state.produce_id == "img-7"
    assert state.ingredients == []
    assert "not among the trust anchors" in state.reason
    # The TC260 label written first is still there, byte for byte, and so are the pixels.
    assert xmp_of(signed) == packet
    with Image.open(io.BytesIO(signed)) as after, Image.open(io.BytesIO(unsigned)) as before:
        assert np.array_equal(np.asarray(after), np.asarray(before))
    assert read_credentials(unsigned, fmt).state == "absent"


@pytest.mark.parametrize("fmt", FORMATS)
def test_edited_manifest_names_the_source_as_parent(creds, fmt):
    source = encode(picture(48), "png")
    edited = encode(picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT), fmt, xmp_packet("img-8"))
    signed = creds.sign(
        edited,
        fmt,
        title="img-8",
        source_type=SOURCE_EDITED,
        produce_id="img-8",
        ingredient=source,
        ingredient_fmt="png",
        software="AIGC Studio 9.9",
    )

    state = read_credentials(signed, fmt)
    assert state.state == "valid", state.reason
    assert state.actions == ["c2pa.opened", "c2pa.edited"]
    assert state.source_type == SOURCE_EDITED
    assert state.ingredients == ["source.png (parentOf)"]
    assert state.claim_generator == "AIGC Studio 9.9"
    assert state.produce_id == "img-8"
    assert xmp_of(signed) == xmp_packet("img-8")


def test_trusted_only_with_the_anchor_and_only_for_that_read(creds, tmp_path):
    signed = creds.sign(encode(picture(), "png"), "png", title="t", source_type=SOURCE_CREATED, produce_id="1")
    trusted = read_credentials(signed, "png", creds.trust_anchors())
    assert trusted.state == "trusted", trusted.reason
    assert trusted.reason.startswith("signature and hashes good; signed by AIGC Studio signer")
    # The anchors did not stay behind in the library's process-wide settings.
    assert read_credentials(signed, "png").state == "valid"
    # Another CA as anchor: the file is intact, the signer just is not trusted by it.
    other = Credentials(tmp_path / "other")
    other.ensure()
    assert other.trust_anchors() != creds.trust_anchors()
    untrusted = read_credentials(signed, "png", other.trust_anchors())
    assert untrusted.state == "valid", untrusted.reason
    assert read_credentials(signed, "png", creds.trust_anchors()).state == "trusted"


def test_reads_with_and_without_anchors_at_once_do_not_mix(creds):
    signed = creds.sign(encode(picture(), "png"), "png", title="t", source_type=SOURCE_CREATED, produce_id="1")
    anchors = creds.trust_anchors()
    start = threading.Barrier(4)
    seen: dict[int, list[str]] = {}

    def read(index: int):
        start.wait()
        seen[index] = [read_credentials(signed, "png", anchors if index % 2 else None).state for _ in range(10)]

    threads = [threading.Thread(target=read, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert seen == {0: ["valid"] * 10, 1: ["trusted"] * 10, 2: ["valid"] * 10, 3: ["trusted"] * 10}


def _flip_in_png_chunk(data: bytes, chunk: bytes, offset: int) -> bytes:
    """Flip one byte inside a PNG chunk's data and fix its CRC, as an editor that changes it would."""
    at = data.index(chunk) - 4
    length = int.from_bytes(data[at : at + 4], "big")
    body = bytearray(data[at + 4 : at + 8 + length])
    body[4 + offset] ^= 0x01
    crc = zlib.crc32(bytes(body)).to_bytes(4, "big")
    return data[: at + 4] + bytes(body) + crc + data[at + 12 + length :]


def _flip_in_jpeg_scan(data: bytes) -> bytes:
    start = data.rindex(b"\xff\xda")  # the last start-of-scan: after every APP segment c2pa adds
    flipped = bytearray(data)
    flipped[start + 40] ^= 0x01
    return bytes(flipped)


def _flip_in_webp_frame(data: bytes) -> bytes:
    start = data.index(b"VP8 ")  # the first frame is the picture; the thumbnail sits inside the manifest
    flipped = bytearray(data)
    flipped[start + 200] ^= 0x01
    return bytes(flipped)


FLIP_IN_IMAGE_DATA = {
    "png": lambda data: _flip_in_png_chunk(data, b"IDAT", 10),
    "jpeg": _flip_in_jpeg_scan,
    "webp": _flip_in_webp_frame,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_flipped_byte_in_the_image_data_is_invalid(creds, fmt):
    signed = creds.sign(encode(picture(), fmt), fmt, title="t", source_type=SOURCE_CREATED, produce_id="1")
    tampered = FLIP_IN_IMAGE_DATA[fmt](signed)

    state = read_credentials(tampered, fmt, creds.trust_anchors())
    assert state.state == "invalid"
    assert state.failures == ["assertion.dataHash.mismatch"]
    assert state.reason.startswith(
        "the file's bytes (pixels or metadata) changed after it was signed (assertion.dataHash.mismatch: "
    )
    # What the manifest says is still reported, for the inspector to show.
    assert state.produce_id == "1" and state.signer == STUDIO_SIGNER


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk with length and CRC) in file order, after the signature."""
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        chunks.append((data[at + 4 : at + 8], data[at : at + 12 + length]))
        at += 12 + length
    return chunks


def test_one_changed_pixel_with_every_chunk_kept_is_invalid(creds):
    """An editor that keeps the metadata: one pixel changed, the pixels re-encoded, every other chunk
    (the manifest, the XMP, the infotext) kept in place."""
    signed = creds.sign(
        encode(picture(), "png", xmp_packet("img-3")), "png", title="t", source_type=SOURCE_CREATED, produce_id="3"
    )
    with Image.open(io.BytesIO(signed)) as image:
        changed = image.convert("RGB")
    original = np.asarray(changed).copy()
    changed.putpixel((10, 20), tuple(255 - value for value in changed.getpixel((10, 20))))
    new_idat = b"".join(chunk for kind, chunk in _png_chunks(encode(changed, "png")) if kind == b"IDAT")
    kept = _png_chunks(signed)
    first_idat = next(index for index, (kind, _) in enumerate(kept) if kind == b"IDAT")
    spliced = b"".join(
        [signed[:8]]
        + [chunk for kind, chunk in kept[:first_idat]]
        + [new_idat]
        + [chunk for kind, chunk in kept[first_idat:] if kind != b"IDAT"]
    )
    assert [kind for kind, _ in _png_chunks(spliced)].count(b"caBX") == 1
    with Image.open(io.BytesIO(spliced)) as after:
        diff = np.argwhere(np.any(np.asarray(after.convert("RGB")) != original, axis=-1))
    assert diff.tolist() == [[20, 10]]
    assert xmp_of(spliced) == xmp_packet("img-3")

    state = read_credentials(spliced, "png", creds.trust_anchors())
    assert state.state == "invalid"
    assert state.failures == ["assertion.dataHash.mismatch"]


def test_the_signature_covers_the_xmp_label(creds):
    signed = creds.sign(
        encode(picture(), "png", xmp_packet("img-1")), "png", title="t", source_type=SOURCE_CREATED, produce_id="1"
    )
    offset = signed.index(b"img-1") - signed.index(b"iTXt") - 4
    relabeled = _flip_in_png_chunk(signed, b"iTXt", offset)  # "img-1" -> "hmg-1"
    assert b"hmg-1" in relabeled

    state = read_credentials(relabeled, "png")
    assert state.state == "invalid"
    assert state.failures == ["assertion.dataHash.mismatch"]

    jpeg = creds.sign(
        encode(picture(), "jpeg", xmp_packet("img-1")), "jpeg", title="t", source_type=SOURCE_CREATED, produce_id="1"
    )
    relabeled = jpeg.replace(b"img-1", b"img-2", 1)
    assert read_credentials(relabeled, "jpeg").failures == ["assertion.dataHash.mismatch"]

    # The infotext (PNG tEXt "parameters") is covered as well: "Seed: 1" -> "Seed: 0".
    offset = signed.index(b"Seed: 1") + len("Seed: ") - signed.index(b"tEXt") - 4
    reseeded = _flip_in_png_chunk(signed, b"tEXt", offset)
    assert b"Seed: 0" in reseeded
    assert read_credentials(reseeded, "png").failures == ["assertion.dataHash.mismatch"]


def test_an_edit_of_a_signed_studio_image_keeps_the_source_as_ingredient(creds):
    source = creds.sign(encode(picture(), "png"), "png", title="src", source_type=SOURCE_CREATED, produce_id="src-1")
    edited = creds.sign(
        encode(picture(), "jpeg"),
        "jpeg",
        title="edit",
        source_type=SOURCE_EDITED,
        produce_id="img-2",
        ingredient=source,
        ingredient_fmt="png",
    )
    state = read_credentials(edited, "jpeg", creds.trust_anchors())
    assert (state.state, state.produce_id, state.ingredients) == ("trusted", "img-2", ["source.png (parentOf)"])
    assert state.actions == ["c2pa.opened", "c2pa.edited"]

    # A tampered source: the edit itself is intact, and its ingredient says what was wrong with the source.
    tampered = _flip_in_png_chunk(source, b"IDAT", 10)
    edited = creds.sign(
        encode(picture(), "jpeg"),
        "jpeg",
        title="edit",
        source_type=SOURCE_EDITED,
        produce_id="img-3",
        ingredient=tampered,
        ingredient_fmt="png",
    )
    state = read_credentials(edited, "jpeg", creds.trust_anchors())
    assert state.state == "trusted"
    assert state.ingredients == ["source.png (parentOf, its manifest invalid: assertion.dataHash.mismatch)"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pillow_resave_strips_the_manifest(creds, fmt):
    signed = creds.sign(encode(picture(), fmt), fmt, title="t", source_type=SOURCE_CREATED, produce_id="1")
    with Image.open(io.BytesIO(signed)) as image:
        changed = image.convert("RGB")
    changed.putpixel((3, 3), (255, 0, 0))
    resaved = encode(changed, fmt)

    state = read_credentials(resaved, fmt)
    assert state.state == "absent"
    assert state.reason == "no C2PA manifest in the file"


def test_arbitrary_bytes_never_raise(creds):
    signed = creds.sign(encode(picture(), "png"), "png", title="t", source_type=SOURCE_CREATED, produce_id="1")
    not_png = read_credentials(b"hello world", "png")
    assert not_png.state == "absent"
    assert not_png.reason.startswith("no C2PA manifest: the bytes are not a readable PNG")
    assert read_credentials(b"", "jpeg").state == "absent"
    assert read_credentials(b"RIFF\x00\x00", "webp").state == "absent"

    # A manifest cut short: someone signed it, and it cannot be read any more.
    cut = signed[: signed.index(b"caBX") + 500]
    state = read_credentials(cut, "png")
    assert state.state == "invalid", state.reason
    assert state.reason.startswith("the C2PA manifest cannot be read: ")

    # A byte flipped inside the manifest: its own hashes catch it.
    broken = _flip_in_png_chunk(signed, b"caBX", 2000)
    state = read_credentials(broken, "png")
    assert state.state == "invalid"
    assert state.failures == ["assertion.hashedURI.mismatch"]  # the byte falls in the thumbnail
    assert state.reason.startswith("a part of the manifest changed after it was signed (assertion.hashedURI.mismatch: ")

    with pytest.raises(ValueError, match="format must be one of png, jpeg, webp, got 'gif'"):
        read_credentials(signed, "gif")


def test_signing_what_is_not_an_image_names_the_data_not_the_certificate(creds):
    with pytest.raises(ValueError, match=r"^cannot sign: the data must be a readable PNG file \(") as caught:
        creds.sign(b"hello world", "png", title="t", source_type=SOURCE_CREATED, produce_id="1")
    assert not isinstance(caught.value, CredentialsError)
    with pytest.raises(ValueError, match="format must be one of png, jpeg, webp, got 'bmp'"):
        creds.sign(encode(picture(), "png"), "bmp", title="t", source_type=SOURCE_CREATED, produce_id="1")


def test_ensure_makes_one_ca_and_leaf_with_private_keys(tmp_path):
    folder = tmp_path / "c2pa"
    credentials = Credentials(folder)
    credentials.ensure()

    assert sorted(path.name for path in folder.iterdir()) == [".lock", "ca.key", "ca.pem", "signer.key", "signer.pem"]
    for key in ("ca.key", "signer.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600
    leaf, ca = x509.load_pem_x509_certificates((folder / "signer.pem").read_bytes())
    assert leaf.issuer == ca.subject
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc >= datetime.timedelta(days=3650)
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert credentials.trust_anchors() == (folder / "ca.pem").read_text()

    before = (folder / "ca.pem").read_bytes()
    Credentials(folder).ensure()  # a second studio start: nothing is remade
    assert (folder / "ca.pem").read_bytes() == before


def test_two_threads_first_use_make_one_ca(tmp_path):
    folder = tmp_path / "c2pa"
    start = threading.Barrier(4)
    anchors: list[str] = []

    def first_use():
        credentials = Credentials(folder)  # separate objects, as two services would hold
        start.wait()
        credentials.ensure()
        anchors.append(credentials.trust_anchors())

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(anchors) == 4 and len(set(anchors)) == 1
    assert anchors[0] == (folder / "ca.pem").read_text()


def test_two_processes_first_use_make_one_ca(tmp_path):
    folder, go = tmp_path / "c2pa", tmp_path / "go"
    script = (
        "import sys, time, pathlib\n"
        "from aigc_studio.labels.credentials import Credentials\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.005)\n"
        "c = Credentials(pathlib.Path(sys.argv[1])); c.ensure(); print(c.trust_anchors(), end='')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(go)], stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # both imported and waiting (a generous bound for a loaded machine; the race is still on)
    go.touch()
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs[0] == outputs[1] == (folder / "ca.pem").read_text()
    leaf, ca = x509.load_pem_x509_certificates((folder / "signer.pem").read_bytes())
    assert leaf.issuer == ca.subject and ca.public_bytes(serialization.Encoding.PEM).decode() == outputs[0]


def test_two_threads_sign_at_once(creds):
    data = {"png": encode(picture(), "png"), "jpeg": encode(picture(), "jpeg")}
    start = threading.Barrier(2)
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def sign(fmt: str):
        start.wait()
        try:
            for round_ in range(3):
                results[f"{fmt}{round_}"] = creds.sign(
                    data[fmt], fmt, title=fmt, source_type=SOURCE_CREATED, produce_id=f"{fmt}-{round_}"
                )
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=sign, args=(fmt,)) for fmt in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for name, signed in results.items():
        fmt, round_ = name[:-1], name[-1]
        state = read_credentials(signed, fmt, creds.trust_anchors())
        assert (state.state, state.produce_id) == ("trusted", f"{fmt}-{round_}")


USER_KEYS = {
    "p384": (lambda: ec.generate_private_key(ec.SECP384R1()), hashes.SHA384),
    "rsa": (lambda: rsa.generate_private_key(65537, 2048), hashes.SHA256),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, lambda: None),
}


def _user_chain(folder, kind: str = "p384") -> tuple:
    """A user's own CA and signing certificate, as a company's PKI would issue them."""
    make_key, digest = USER_KEYS[kind]
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    ca_key, key = make_key(), make_key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Example Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Co"),
        ]
    )
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Example Newsroom"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Co"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, digest())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, digest())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "me.pem", folder / "me.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("kind", list(USER_KEYS))
def test_a_users_own_certificate_signs_instead(tmp_path, creds, kind):
    cert, key, root = _user_chain(tmp_path / "mine", kind)
    mine = Credentials(tmp_path / "unused", cert=cert, key=key)
    mine.ensure()
    assert not (tmp_path / "unused").exists()  # no studio CA is made when the user brings one
    assert mine.trust_anchors() == root

    signed = mine.sign(encode(picture(), "jpeg"), "jpeg", title="t", source_type=SOURCE_CREATED, produce_id="9")
    state = read_credentials(signed, "jpeg", mine.trust_anchors())
    assert (state.state, state.signer) == ("trusted", "Example Newsroom, Example Co")
    assert read_credentials(signed, "jpeg", creds.trust_anchors()).state == "valid"


def test_bad_or_mismatched_pairs_are_clear_errors(tmp_path, creds):
    cert, key, _ = _user_chain(tmp_path / "mine")
    with pytest.raises(
        CredentialsError, match=f"{tmp_path / 'c2pa' / 'signer.key'} does not match the certificate in {cert}"
    ):
        Credentials(tmp_path / "x", cert=cert, key=tmp_path / "c2pa" / "signer.key").ensure()
    with pytest.raises(CredentialsError, match=f"{key} is not a PEM certificate chain"):
        Credentials(tmp_path / "x", cert=key, key=key).ensure()
    with pytest.raises(CredentialsError, match=f"{cert} is not an unencrypted PEM private key"):
        Credentials(tmp_path / "x", cert=cert, key=cert).ensure()
    with pytest.raises(CredentialsError, match=f"cannot read {tmp_path / 'nope.pem'}: No such file"):
        Credentials(tmp_path / "x", cert=tmp_path / "nope.pem", key=key).ensure()
    with pytest.raises(CredentialsError, match="c2pa_cert is set but c2pa_key is empty: give both, or neither"):
        Credentials(tmp_path / "x", cert=cert)
    # A pair that matches but that C2PA refuses (P-256 without the signing key usage): named, not a traceback.
    with pytest.raises(CredentialsError, match=f"c2pa refused to sign with {cert}"):
        _refused = _no_key_usage_chain(tmp_path / "refused", cert)
        Credentials(tmp_path / "x", cert=cert, key=_refused).sign(
            encode(picture(), "png"), "png", title="t", source_type=SOURCE_CREATED, produce_id="1"
        )


def _no_key_usage_chain(folder, cert_path):
    """Overwrite cert_path with a self-signed CA certificate (no EKU) and return its key: c2pa refuses it."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not a signer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / "k.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key_path


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool (libimage-exiftool-perl) is not installed")
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exiftool_sees_the_c2pa_block(creds, fmt, tmp_path):
    path = tmp_path / f"signed.{fmt}"
    path.write_bytes(
        creds.sign(
            encode(picture(), fmt, xmp_packet("img-5")), fmt, title="t", source_type=SOURCE_CREATED, produce_id="img-5"
        )
    )
    lines = [
        " ".join(line.split())
        for line in subprocess.run(
            ["exiftool", "-G1", "-a", str(path)], capture_output=True, text=True, check=True, timeout=60
        ).stdout.splitlines()
    ]
    assert "[JUMBF] JUMD Label : c2pa" in lines
    assert "[JUMBF] JUMD Label : c2pa.actions.v2" in lines
    assert "[JUMBF] JUMD Label : org.aigc-studio.produce" in lines
    assert "[CBOR] Actions Action : c2pa.created" in lines
    assert f"[CBOR] Actions Digital Source Type : {SOURCE_CREATED}" in lines
    assert "[CBOR] Produce id : img-5" in lines
    assert f"[CBOR] Claim Generator Info Version : {__version__}" in lines
    assert any(line.startswith("[XMP-TC260] Aigc : ") and "img-5" in line for line in lines)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_manifest_adds_little_to_a_512_picture(creds, fmt):
    # The library's default thumbnail is the picture again, in its own format (+250 KB on this PNG,
    # +120 KB on the WebP); ours is a 256 px JPEG.
    data = encode(picture(512), fmt)
    signed = creds.sign(data, fmt, title="t", source_type=SOURCE_CREATED, produce_id="1")
    assert len(signed) - len(data) < 30_000
    assert read_credentials(signed, fmt).state == "valid"


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool (libimage-exiftool-perl) is not installed")
def test_exiftool_sees_the_c2pa_chunk_of_a_webp(creds, tmp_path):
    # exiftool 12.57 decodes JUMBF in PNG and JPEG only; in WebP it names the RIFF chunk, with -u.
    path = tmp_path / "signed.webp"
    signed = creds.sign(
        encode(picture(), "webp", xmp_packet("img-6")),
        "webp",
        title="t",
        source_type=SOURCE_CREATED,
        produce_id="img-6",
    )
    path.write_bytes(signed)
    output = subprocess.run(
        ["exiftool", "-G1", "-a", "-u", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    lines = [" ".join(line.split()) for line in output.splitlines()]
    chunk = next(line for line in lines if line.startswith("[RIFF] Unknown C2PA : "))
    size = int(chunk.split("Binary data ")[1].split()[0])
    assert 5_000 < size < 30_000  # the manifest, with its 256 px JPEG thumbnail
    assert any(line.startswith("[XMP-TC260] Aigc : ") and "img-6" in line for line in lines)


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_damage_never_raises(creds, fmt):
    signed = creds.sign(encode(picture(), fmt), fmt, title="t", source_type=SOURCE_CREATED, produce_id="1")
    rng = np.random.default_rng(11)
    states = set()
    for _ in range(40):
        damaged = bytearray(signed)
        for at in rng.integers(0, len(damaged), size=int(rng.integers(1, 8))):
            damaged[at] = int(rng.integers(0, 256))
        cut = int(rng.integers(len(damaged) // 2, len(damaged) + 1))
        state = read_credentials(bytes(damaged[:cut]), fmt)
        assert state.state in {"absent", "invalid", "valid"}
        assert state.reason
        states.add(state.state)
    assert "invalid" in states


def test_bench_prints_a_row_per_format():
    bench = Path(__file__).resolve().parent.parent / "bench" / "credentials.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, str(bench), "--runs", "2"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["png", "jpeg", "webp"]
    for row in rows:
        assert 5_000 < int(row[2]) < 30_000  # bytes added
