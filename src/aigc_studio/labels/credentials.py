"""C2PA content credentials: sign a generated image and read a file's credentials back, with c2pa-python.

Signing needs a certificate chain and its private key. Unless the user gives their own (the ``c2pa_cert``
and ``c2pa_key`` settings), :meth:`Credentials.ensure` makes a small private CA and a leaf signing
certificate under the folder the studio passes (``AIGC_HOME/c2pa``) on first use:

- ``ca.pem`` / ``ca.key``: the studio's own CA (EC P-256, 20 years); it is nobody's public trust anchor,
  so other verifiers call the file "valid" (signature and hashes good, signer unknown), not "trusted";
- ``signer.pem`` / ``signer.key``: the leaf (EC P-256, ES256, 10 years), key usage digitalSignature, EKU
  emailProtection (one of the purposes the C2PA trust model accepts); ``signer.pem`` holds leaf + CA.

Keys are written with mode 0600. No timestamp authority is used: nothing here reaches the network.

A manifest carries the claim generator (AIGC Studio and its version), the title, one ``c2pa.actions``
assertion (``c2pa.created`` with digitalSourceType trainedAlgorithmicMedia; or ``c2pa.opened`` of the
source image, kept as a ``parentOf`` ingredient, then ``c2pa.edited`` with
compositeWithTrainedAlgorithmicMedia) and the studio's
ProduceID in a custom assertion :data:`PRODUCE_ASSERTION` (``{"produce_id": ...}``). The library keeps
every chunk the input already has (XMP, PNG text), and its hard binding hashes them, so a TC260 label
written before signing is covered by the signature.

c2pa-python's ``load_settings`` is process-global; this module never calls it. Every sign and read
builds its own ``c2pa.Context`` with its own settings, so trust anchors given to one read do not change
another.
"""

from __future__ import annotations

import datetime
import fcntl
import io
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PRODUCE_ASSERTION = "org.aigc-studio.produce"
CA_YEARS = 20
LEAF_YEARS = 10
THUMBNAIL_EDGE = 256

_CA_CERT, _CA_KEY, _LEAF_CERT, _LEAF_KEY = "ca.pem", "ca.key", "signer.pem", "signer.key"
# One lock per folder, for every Credentials object in the process: two threads' first uses must not
# make two CAs.
_FOLDER_LOCKS: dict[Path, threading.Lock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


class CredentialsError(ValueError):
    """A certificate or key that cannot sign: unreadable, mismatched, or refused by c2pa (names the file)."""


def _mime(fmt: str) -> str:
    try:
        return MIME[fmt]
    except KeyError:
        raise ValueError(f"format must be one of {', '.join(MIME)}, got {fmt!r}") from None


def _folder_lock(folder: Path) -> threading.Lock:
    with _FOLDER_LOCKS_GUARD:
        return _FOLDER_LOCKS.setdefault(folder.resolve(), threading.Lock())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AIGC Studio"),
        ]
    )


def _make_chain() -> tuple[bytes, bytes, bytes, bytes]:
    """A fresh CA and leaf: (ca cert PEM, ca key PEM, leaf+ca chain PEM, leaf key PEM)."""
    # A minute in the past: a verifier whose clock is a little behind must not see "not yet valid".
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("AIGC Studio local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("AIGC Studio signer"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * LEAF_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    return ca_pem, _pem_key(ca_key), leaf.public_bytes(serialization.Encoding.PEM) + ca_pem, _pem_key(leaf_key)


def _algorithm(key, key_path: Path) -> str:
    """The COSE algorithm c2pa signs with for this key type."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise CredentialsError(f"{key_path}: EC curve {key.curve.name} cannot sign C2PA; allowed: P-256, P-384, P-521")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise CredentialsError(f"{key_path}: a {type(key).__name__} cannot sign C2PA; allowed: EC, RSA, Ed25519")


def _load_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes, str, list[x509.Certificate]]:
    """Read and check a chain + key: (chain PEM, key PEM, algorithm, certificates)."""
    try:
        chain_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CredentialsError(
            f"{cert_path} is not a PEM certificate chain (expected -----BEGIN CERTIFICATE----- blocks, signer first)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(
            f"{key_path} is not an unencrypted PEM private key ({exc}); allowed: PKCS#8 or traditional PEM"
        ) from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certs[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CredentialsError(
            f"{key_path} does not match the certificate in {cert_path} "
            f"(its first certificate, {certs[0].subject.rfc4514_string()}, has another public key)"
        )
    return chain_pem, key_pem, _algorithm(key, key_path), certs


class Credentials:
    """Signs images with C2PA content credentials, from the studio's own CA or the user's chain."""

    def __init__(self, folder: Path, cert: Path | None = None, key: Path | None = None):
        """``folder`` holds the studio-made CA and leaf; ``cert``/``key`` are the user's own PEM chain
        (signer first) and its private key, used instead when both are given."""
        if (cert is None) != (key is None):
            given, missing = ("c2pa_cert", "c2pa_key") if cert is not None else ("c2pa_key", "c2pa_cert")
            raise CredentialsError(f"{given} is set but {missing} is empty: give both, or neither")
        self.folder = Path(folder)
        self.cert = Path(cert) if cert is not None else None
        self.key = Path(key) if key is not None else None
        self._loaded: tuple[bytes, bytes, str, list[x509.Certificate]] | None = None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Make the CA and leaf under the folder on first use (the user's own pair: check it). Idempotent;
        safe from several threads and processes at once: they all end up with the same CA."""
        if self.cert is not None:
            self._load()
            return
        paths = [self.folder / name for name in (_CA_CERT, _CA_KEY, _LEAF_KEY, _LEAF_CERT)]
        if all(path.is_file() for path in paths):
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The thread lock for this process's workers, the file lock for another process (the server and
        # a CLI command starting at once): without both, two CAs could interleave their files.
        with _folder_lock(self.folder), open(self.folder / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            if all(path.is_file() for path in paths):
                return
            ca_pem, ca_key, chain, leaf_key = _make_chain()
            # The leaf chain last: an interrupted first use leaves no signer.pem, and the next one starts over.
            files = zip(paths, (ca_pem, ca_key, leaf_key, chain), (0o644, 0o600, 0o600, 0o644), strict=True)
            for path, data, mode in files:
                _write_atomic(path, data, mode)

    def _load(self) -> tuple[bytes, bytes, str, list[x509.Certificate]]:
        with self._lock:
            if self._loaded is None:
                if self.cert is not None:
                    self._loaded = _load_pair(self.cert, self.key)
                else:
                    self.ensure()
                    self._loaded = _load_pair(self.folder / _LEAF_CERT, self.folder / _LEAF_KEY)
            return self._loaded

    def trust_anchors(self) -> str:
        """PEM of the root to trust: the studio's CA (made now if this is the first use), or the last
        certificate of the user's chain. Pass it to :func:`read_credentials` to see the studio's files
        as trusted."""
        certs = self._load()[3]
        return certs[-1].public_bytes(serialization.Encoding.PEM).decode()

    def sign(
        self,
        data: bytes,
        fmt: str,
        *,
        title: str,
        source_type: str,
        produce_id: str,
        ingredient: bytes | None = None,
        ingredient_fmt: str | None = None,
        software: str | None = None,
    ) -> bytes:
        """Return ``data`` (an encoded PNG/JPEG/WebP) with a C2PA manifest embedded: ``c2pa.created``; or,
        with ``ingredient`` (the source image's file), ``c2pa.opened`` of it as the parentOf ingredient
        then ``c2pa.edited``. Every chunk already in ``data`` (XMP, text) is kept and covered by the
        signature. CredentialsError when c2pa refuses the certificate; ValueError when it cannot parse
        ``data`` or ``ingredient``. Safe to call from several threads at once."""
        mime = _mime(fmt)
        chain_pem, key_pem, alg, _ = self._load()
        name, version = _software(software)
        edited = ingredient is not None
        agent = {"name": name, "version": version}
        action = {
            "action": "c2pa.edited" if edited else "c2pa.created",
            "digitalSourceType": source_type,
            "softwareAgent": agent,
        }
        # A v2 claim's first action must be created or opened: an edit opens its parentOf source first.
        opened = {"action": "c2pa.opened", "softwareAgent": agent, "parameters": {"ingredientIds": ["source"]}}
        actions = [opened, action] if edited else [action]
        manifest = {
            "claim_generator_info": [{"name": name, "version": version}],
            "title": title,
            "format": mime,
            "assertions": [
                {"label": "c2pa.actions.v2", "data": {"actions": actions}},
                {"label": PRODUCE_ASSERTION, "data": {"produce_id": produce_id}},
            ],
        }
        signer_info = c2pa.C2paSignerInfo(alg.encode(), chain_pem, key_pem, None)
        try:
            with (
                c2pa.Signer.from_info(signer_info) as signer,
                c2pa.Context(settings=_settings(None)) as context,
                c2pa.Builder(manifest, context) as builder,
            ):
                if edited:
                    builder.add_ingredient(
                        {"title": f"source.{ingredient_fmt or fmt}", "relationship": "parentOf", "label": "source"},
                        _mime(ingredient_fmt or fmt),
                        io.BytesIO(ingredient),
                    )
                out = io.BytesIO()
                builder.sign(signer, mime, io.BytesIO(data), out)
                return out.getvalue()
        except c2pa.C2paError.Signature as exc:
            where = self.cert or self.folder / _LEAF_CERT
            raise CredentialsError(
                f"c2pa refused to sign with {where}: {exc}. C2PA accepts a signing certificate that is not a CA, "
                "has key usage digitalSignature, an extended key usage such as emailProtection or "
                "documentSigning, and an authority key identifier, followed by its issuers"
            ) from None
        except c2pa.C2paError as exc:
            what = "the data or its source image" if edited else "the data"
            raise ValueError(f"cannot sign: {what} must be a readable {fmt.upper()} file ({exc})") from None


def _software(software: str | None) -> tuple[str, str]:
    if software is None:
        from .. import __version__  # the package's version string only: labels stays free of services

        return "AIGC Studio", __version__
    name, _, version = software.rpartition(" ")
    return (name, version) if name else (software, "")


def _settings(trust_anchors: str | None) -> c2pa.Settings:
    """Settings for one sign or read; with anchors, a signer that chains to them reads as trusted."""
    # The library's default claim thumbnail is the whole picture again (a 512² PNG as a PNG: +250 KB on
    # a detailed image; +120 KB as a WebP for a WebP); a 256 px JPEG is enough for a preview (~12 KB).
    config: dict = {
        "verify": {"verify_trust": trust_anchors is not None},
        "builder": {"thumbnail": {"long_edge": THUMBNAIL_EDGE, "quality": "medium", "format": "jpeg"}},
    }
    if trust_anchors is not None:
        config["trust"] = {"user_anchors": trust_anchors}
    return c2pa.Settings.from_dict(config)


@dataclass
class C2paState:
    state: str  # "absent" | "valid" | "trusted" | "invalid"
    reason: str  # human words; for invalid the failure codes (e.g. assertion.dataHash.mismatch)
    actions: list[str] = field(default_factory=list)
    source_type: str | None = None
    signer: str | None = None  # "CN, O" of the signing certificate
    claim_generator: str | None = None
    title: str | None = None
    ingredients: list[str] = field(default_factory=list)  # "title (relationship)"
    produce_id: str | None = None  # the studio's ProduceID, from PRODUCE_ASSERTION
    failures: list[str] = field(default_factory=list)  # validation failure codes

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (for inspect)."""
        return dict(self.__dict__)


# Failure codes that say only "the signer is not on the trust list": the file is still intact and signed.
_UNTRUSTED = {"signingCredential.untrusted"}
# Plain words for the failures a user meets most; the library's code and explanation follow them.
_FAILURE_WORDS = {
    "assertion.dataHash.mismatch": "the file's bytes (pixels or metadata) changed after it was signed",
    "assertion.hashedURI.mismatch": "a part of the manifest changed after it was signed",
    "claimSignature.mismatch": "the signature does not match the manifest",
    "signingCredential.expired": "the signing certificate had expired",
    "signingCredential.revoked": "the signing certificate was revoked",
    "signingCredential.invalid": "the signing certificate is not one C2PA accepts",
}


def read_credentials(data: bytes, fmt: str, trust_anchors: str | None = None) -> C2paState:
    """Read and validate the C2PA manifest of ``data`` (a ``fmt`` file: png, jpeg or webp).

    ``absent``: no manifest, or bytes that c2pa cannot parse as an image (the reason says which);
    ``valid``: signature and hashes good, the signer not trusted here; ``trusted``: the signer chains to
    ``trust_anchors`` (PEM; pass :meth:`Credentials.trust_anchors` for the studio's CA); ``invalid``: the
    failure codes, and plain words with the library's explanations in ``reason``. An ingredient whose own
    manifest had failed when it was added says so in ``ingredients``. Never raises on arbitrary bytes;
    ValueError only for a ``fmt`` outside png/jpeg/webp. The anchors apply to this read only.
    """
    mime = _mime(fmt)
    try:
        with c2pa.Context(settings=_settings(trust_anchors)) as context:
            reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
            if reader is None:
                return C2paState("absent", "no C2PA manifest in the file")
            with reader:
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
                manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        # The library cannot tell "not an image" from "an image whose manifest is broken" by error
        # type; a JUMBF box with a C2PA label in the bytes means someone meant to sign it.
        if b"jumb" in data and b"c2pa" in data:
            return C2paState("invalid", f"the C2PA manifest cannot be read: {exc}", failures=["manifest.unreadable"])
        return C2paState("absent", f"no C2PA manifest: the bytes are not a readable {fmt.upper()} ({exc})")
    found = _describe(manifest)
    failures = _failures(results)
    codes = [str(item.get("code")) for item in failures]
    signer = found.signer or "an unnamed signer"
    if failures and not set(codes) <= _UNTRUSTED:
        found.state = "invalid"
        found.failures = codes
        found.reason = "; ".join(_failure_words(item) for item in failures)
    elif state.lower() == "invalid":
        found.state = "invalid"
        found.reason = "c2pa reports the manifest invalid without naming a failure"
    elif state.lower() == "trusted":
        found.state = "trusted"
        found.reason = f"signature and hashes good; signed by {signer}, which chains to a trusted anchor"
    else:
        found.state = "valid"
        found.failures = codes
        found.reason = f"signature and hashes good; the signer ({signer}) is not among the trust anchors of this check"
    return found


def _failures(results: dict) -> list[dict]:
    """The active manifest's failures, then the ingredients' deltas (what the reader finds wrong in an
    ingredient now that its signer did not record)."""
    active = (results.get("activeManifest") or {}).get("failure") or []
    deltas = [
        item
        for delta in results.get("ingredientDeltas") or []
        if isinstance(delta, dict)
        for item in (delta.get("validationDeltas") or {}).get("failure") or []
    ]
    return [item for item in [*active, *deltas] if isinstance(item, dict)]


def _failure_words(item: dict) -> str:
    code = str(item.get("code"))
    detail = f"{code}: {item['explanation']}" if item.get("explanation") else code
    return f"{_FAILURE_WORDS[code]} ({detail})" if code in _FAILURE_WORDS else detail


def _ingredient(item: dict) -> str:
    """ "title (relationship)", and the failure codes of the ingredient's own manifest as found when it
    was added: an edit of a tampered file is itself intact, and says what it was made from."""
    words = f"{item.get('title', '(untitled)')} ({item.get('relationship', 'componentOf')}"
    codes = [str(failure.get("code")) for failure in _failures(item.get("validation_results") or {})]
    codes = [code for code in codes if code not in _UNTRUSTED]
    return f"{words}, its manifest invalid: {', '.join(codes)})" if codes else f"{words})"


def _describe(manifest: dict) -> C2paState:
    """What an active manifest says, whatever its validity."""
    found = C2paState("", "")
    found.title = manifest.get("title")
    generators = manifest.get("claim_generator_info") or []
    if generators and isinstance(generators[0], dict):
        first = generators[0]
        found.claim_generator = " ".join(str(first[key]) for key in ("name", "version") if first.get(key))
    elif manifest.get("claim_generator"):
        found.claim_generator = str(manifest["claim_generator"])
    signature = manifest.get("signature_info") or {}
    found.signer = ", ".join(str(signature[key]) for key in ("common_name", "issuer") if signature.get(key)) or None
    found.ingredients = [_ingredient(item) for item in manifest.get("ingredients") or [] if isinstance(item, dict)]
    # Other tools' custom assertions can hold anything: only dicts are looked into.
    for assertion in manifest.get("assertions") or []:
        body = assertion.get("data") if isinstance(assertion, dict) else None
        if not isinstance(body, dict):
            continue
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in body.get("actions") or []:
                if isinstance(action, dict):
                    found.actions.append(str(action.get("action")))
                    found.source_type = action.get("digitalSourceType") or found.source_type
        elif assertion.get("label") == PRODUCE_ASSERTION and body.get("produce_id") is not None:
            found.produce_id = str(body["produce_id"])
    return found
