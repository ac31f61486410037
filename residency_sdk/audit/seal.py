"""Sealed transfer-audit reports: tamper evidence anyone holding the public key can check.

A seal (``residency.audit.seal/v1``) is an Ed25519 signature over a small JSON object that
names the report's content (``report_digest``: SHA-256 of its RFC 8785 canonical JSON,
without the seal), the exact document it travels in (``document_digest``, HTML and PDF),
and the values a reader relies on: the chain head the report was built from, its anchor
references, its schema and time. The seal lives inside the document:

- JSON: under the report's ``"seal"`` key (whitespace and key order do not matter, the
  content does);
- HTML: a ``<script type="application/json" id="residency-seal">`` put where the template
  left :data:`SEAL_SLOT_HTML`; the document digest covers every byte of the page with the
  marker in place of the seal, so an edited cell, style or embedded datum fails;
- PDF: the document-info entry ``/ResidencySeal``, a fixed-length slot (``RESIDENCYSEALV1``
  then zeros) whose bytes are overwritten in place with the seal's canonical JSON in hex,
  padded with spaces (no offset moves, the xref stays valid), like the ``/Contents`` of a
  PDF signature; the document digest covers the whole file with the slot blank. The
  report's JSON rides along as the attachment ``residency-report.json``.

:func:`verify_report` tells the three apart from the bytes and never raises on a failed
check: it returns a :class:`SealCheck` listing what does not match.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from residency_sdk.errors import (
    AuditFormatError,
    AuditKeyError,
    ReportRenderError,
    SDKNotInstalled,
)

SEAL_SCHEMA = "residency.audit.seal/v1"
SIGNING_KEY_ENV = "RESIDENCY_REPORT_SIGNING_KEY"
SEAL_SLOT_HTML = "<!--residency-seal-->"
REPORT_DATA_ID = "residency-report-data"
SEAL_ID = "residency-seal"
PDF_ATTACHMENT = "residency-report.json"
PDF_SEAL_KEY = "/ResidencySeal"

ALGORITHM = "Ed25519"
_FORMATS = ("json", "html", "pdf")
_SEAL_FIELDS = ("schema", "format", "algorithm", "key_id", "report_digest", "document_digest",
                "report_schema", "generated_at", "chain_head", "anchors", "signature")
_KEYGEN_HINT = "generate one with `residency audit report keygen --out FILE`"

_SEAL_OPEN = f'<script type="application/json" id="{SEAL_ID}">'
_SEAL_ELEMENT = re.compile(re.escape(_SEAL_OPEN) + r"(.*?)</script>", re.S)
# Attribute order and quoting are the template's business; the id is what names the data.
_DATA_ID = re.escape(REPORT_DATA_ID)
_DATA_ELEMENT = re.compile(
    rf"""<script\b[^>]*\bid\s*=\s*(?:"{_DATA_ID}"|'{_DATA_ID}'|{_DATA_ID}(?=[\s>]))[^>]*>"""
    r"(.*?)</script\s*>", re.S | re.I)

# Alphanumeric only: pypdf writes a literal string's other characters as octal escapes,
# which would make the slot's bytes differ from the text we search for.
_PDF_PREFIX = b"RESIDENCYSEALV1"
_PDF_FILL = b"0"
_PDF_MIN_SLOT = 4096
_PDF_PAD = b" "
_HEX = re.compile(rb"(?:[0-9a-f]{2})+")


@dataclass(frozen=True)
class SealCheck:
    """The outcome of :func:`verify_report`.

    ``ok`` is true only when every check passed; otherwise ``problems`` says what does not
    match. ``key_id``, ``chain_head`` and ``generated_at`` are copied from the seal (when
    one was found), ``report_digest`` is the digest of the report the document carries.
    """

    ok: bool
    format: str
    problems: tuple[str, ...]
    key_id: str | None
    report_digest: str | None
    chain_head: str | None
    generated_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """The check as a JSON-ready dict (``problems`` as a list)."""
        return {"ok": self.ok, "format": self.format, "problems": list(self.problems),
                "key_id": self.key_id, "report_digest": self.report_digest,
                "chain_head": self.chain_head, "generated_at": self.generated_at}


# --- keys ----------------------------------------------------------------------------


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the Ed25519 private key in ``path`` (PEM, PKCS#8, unencrypted; an unencrypted
    OpenSSH private key is accepted too).

    Raises :class:`AuditKeyError` for a missing, unreadable, encrypted or non-Ed25519 key
    and :class:`AuditFormatError` for a file that is no private key at all.
    """
    return _load_signing_key(path, origin="")


def signing_key_from_env() -> Ed25519PrivateKey | None:
    """The signing key named by ``$RESIDENCY_REPORT_SIGNING_KEY``, or None when it is unset
    or empty (reports are then rendered unsealed)."""
    path = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if not path:
        return None
    return _load_signing_key(path, origin=f" (from ${SIGNING_KEY_ENV})")


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load the Ed25519 public key in ``path``: PEM SubjectPublicKeyInfo (what
    :func:`generate_keypair` writes) or an OpenSSH ``ssh-ed25519 AAAA...`` line."""
    data = _read_key_file(path, "public key", "")
    text = data.strip()
    if b"PRIVATE KEY" in text:
        # Verifiers must never need the private key; say so rather than derive it.
        raise AuditKeyError(
            f"public key file {path} holds a private key: give the public key instead (the "
            f".pub file keygen wrote next to it); never hand the signing key to verifiers")
    key: object
    if text.startswith(b"ssh-") or text.startswith(b"ecdsa-"):
        lines = [line for line in text.splitlines() if line.strip()
                 and not line.lstrip().startswith(b"#")]
        if len(lines) != 1:
            raise AuditFormatError(
                f"public key file {path} holds {len(lines)} OpenSSH key lines: give a file "
                "with exactly one `ssh-ed25519 AAAA...` line")
        try:
            key = serialization.load_ssh_public_key(lines[0])
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise AuditFormatError(
                f"public key file {path} is not a valid OpenSSH public key line ({exc}): "
                "expected `ssh-ed25519 AAAA... [comment]`") from None
    else:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise AuditFormatError(
                f"public key file {path} is not a PEM public key ({exc}): give the .pub file "
                f"written by `residency audit report keygen`, or an `ssh-ed25519 AAAA...` "
                "line") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(
            f"public key file {path} holds a {_kind(key)} key, not Ed25519: report seals are "
            "Ed25519 signatures; give the public key of the report's Ed25519 signing key")
    return key


def generate_keypair(private_out: Path, public_out: Path) -> str:
    """Write a new Ed25519 key pair as PEM (private: PKCS#8, mode 0600; public:
    SubjectPublicKeyInfo) and return its key id. Existing files are never overwritten."""
    private_out, public_out = Path(private_out), Path(public_out)
    if os.path.abspath(private_out) == os.path.abspath(public_out):
        raise AuditKeyError(
            f"the private and public key would both be written to {private_out}: give "
            "another --public-out")
    for target in (private_out, public_out):
        if target.exists() or target.is_symlink():
            raise AuditKeyError(_refuse_overwrite(target))
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_out, private_pem, 0o600)
    try:
        _write_new(public_out, public_pem, 0o644)
    except BaseException:
        # Half a pair is useless and its private half would block a retry.
        private_out.unlink(missing_ok=True)
        raise
    return key_id(key.public_key())


def key_id(public_key: Ed25519PublicKey) -> str:
    """``ed25519:`` and the first 16 hex digits of SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _load_signing_key(path: str | os.PathLike[str], origin: str) -> Ed25519PrivateKey:
    data = _read_key_file(path, "signing key", origin)
    key: object
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying "encrypted, and no password given".
        raise AuditKeyError(
            f"signing key {path}{origin} is encrypted: give an unencrypted PKCS#8 PEM key "
            f"protected by its file mode (0600) instead (`openssl pkey -in {path} -out NEW`), "
            f"or {_KEYGEN_HINT}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        public = b"PUBLIC KEY" in data or data.lstrip().startswith(b"ssh-")
        what = "a public key, not the private signing key" if public else \
            f"not a PEM private key ({exc})"
        raise AuditFormatError(
            f"signing key {path}{origin} is {what}: point it at the Ed25519 private key "
            f"(PEM, PKCS#8), or {_KEYGEN_HINT}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(
            f"signing key {path}{origin} is a {_kind(key)} key, not Ed25519: report seals are "
            f"Ed25519 signatures; {_KEYGEN_HINT} (or `openssl genpkey -algorithm ed25519`)")
    return key


def _read_key_file(path: str | os.PathLike[str], what: str, origin: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AuditKeyError(
            f"{what} file {path}{origin} does not exist: give the path of an existing key "
            f"file, or {_KEYGEN_HINT}") from None
    except OSError as exc:
        raise AuditKeyError(
            f"cannot read {what} file {path}{origin}: {exc.strerror or exc}; check the path "
            "and its permissions") from None


def _kind(key: object) -> str:
    kinds: tuple[tuple[tuple[type, ...], str], ...] = (
        ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "RSA"),
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "EC"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "DSA"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "Ed448"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "X25519"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "X448"),
    )
    return next((name for types, name in kinds if isinstance(key, types)),
                type(key).__name__)


def _refuse_overwrite(target: Path) -> str:
    return (f"refusing to overwrite {target}: it already exists; remove it or choose another "
            "path (--out / --public-out), so an existing signing key is never lost")


def _write_new(target: Path, data: bytes, mode: int) -> None:
    """Create ``target`` with ``mode`` and write ``data``; never follow or replace an
    existing file (O_EXCL), so the private key is never briefly world-readable either."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise AuditKeyError(_refuse_overwrite(target)) from None
    except OSError as exc:
        raise AuditKeyError(f"cannot write key file {target}: {exc.strerror or exc}; check "
                            "that its folder exists and is writable") from None
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; be exact
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise AuditKeyError(f"cannot write key file {target}: {exc.strerror or exc}") from None


# --- digests and embedding -----------------------------------------------------------


def report_digest(report: Mapping[str, Any]) -> str:
    """``sha256:`` and the hex SHA-256 of the report's RFC 8785 canonical JSON, without
    its ``"seal"`` key.

    The report is first taken through JSON (as a reader of the document sees it), so a
    tuple and a list, or ``1`` and ``1.0``, digest the same. Raises
    :class:`AuditFormatError` for a value JSON cannot carry exactly (NaN, an integer
    beyond 2**53, a non-JSON type).
    """
    body = {k: v for k, v in report.items() if k != "seal"}
    return "sha256:" + hashlib.sha256(_canonical(_as_json(body, "report"), "report")).hexdigest()


def embed_report_json(report: Mapping[str, Any]) -> str:
    """The report as JSON text safe inside ``<script type="application/json">``: ``<``,
    ``>`` and ``&`` are written as ``\\u003c``, ``\\u003e``, ``\\u0026``, so no value can
    close the script element or open a comment."""
    try:
        text = json.dumps(dict(report), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AuditFormatError(f"the report cannot be written as JSON ({exc}): give a report "
                               "of JSON values (as AuditReport.to_dict returns)") from None
    # These characters only ever occur inside JSON strings, where the escape means the same.
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _as_json(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise AuditFormatError(f"the {what} is not plain JSON ({exc}): give JSON values only "
                               "(strings, finite numbers, booleans, null, lists, objects "
                               "with string keys)") from None


def _canonical(value: Any, what: str) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise AuditFormatError(f"the {what} cannot be canonicalised (RFC 8785): {exc}; "
                               "integers must lie within +-2**53 and strings be valid "
                               "Unicode") from None


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses duplicate keys and NaN/Infinity: a document whose JSON
    readers could disagree about must not verify."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


# --- sealing -------------------------------------------------------------------------


def _body(report: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in report.items() if k != "seal"}
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema:
        raise AuditFormatError(
            f"not a report: it has no \"schema\" (got {schema!r}); seal the dict a residency "
            "audit report gives (AuditReport.to_dict)")
    return body


def _chain_head(report: Mapping[str, Any]) -> Any:
    chain = report.get("chain")
    return chain.get("head_hash") if isinstance(chain, Mapping) else None


def _anchors(report: Mapping[str, Any]) -> Any:
    anchors = report.get("anchors")
    return [] if anchors is None else anchors


def _make_seal(report: Mapping[str, Any], fmt: str, key: Ed25519PrivateKey,
               document_digest: str | None) -> dict[str, Any]:
    body = _as_json(_body(report), "report")
    seal: dict[str, Any] = {
        "schema": SEAL_SCHEMA, "format": fmt, "algorithm": ALGORITHM,
        "key_id": key_id(key.public_key()), "report_digest": report_digest(body),
        "document_digest": document_digest, "report_schema": body["schema"],
        "generated_at": body.get("generated_at"), "chain_head": _chain_head(body),
        "anchors": _anchors(body),
    }
    signature = key.sign(_canonical(seal, "seal"))
    seal["signature"] = base64.b64encode(signature).decode("ascii")
    return seal


def seal_json(report: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``report`` with a ``"seal"`` added (an existing seal is replaced)."""
    sealed = copy.deepcopy(_body(report))  # the caller's nested rows stay theirs
    sealed["seal"] = _make_seal(report, "json", key, None)
    return sealed


def _seal_element(seal: Mapping[str, Any]) -> str:
    return _SEAL_OPEN + embed_report_json(seal) + "</script>"


def seal_html(html: str, report: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    """Seal an HTML report rendered from ``report``: the seal replaces the one
    :data:`SEAL_SLOT_HTML` marker.

    Raises :class:`AuditFormatError` when the page has no marker or several, is already
    sealed, or its ``residency-report-data`` script is missing or holds another report.
    """
    slots = html.count(SEAL_SLOT_HTML)
    if slots != 1:
        raise AuditFormatError(
            f"the HTML report has {slots} seal slots ({SEAL_SLOT_HTML}), not one: render it "
            "with the report template, which puts exactly one")
    if _SEAL_OPEN in html:
        raise AuditFormatError("the HTML report is already sealed (it has a residency-seal "
                               "script): seal the freshly rendered page, once")
    found = _DATA_ELEMENT.findall(html)
    if len(found) != 1:
        raise AuditFormatError(
            f"the HTML report has {len(found)} <script id=\"{REPORT_DATA_ID}\"> elements, not "
            "one: the page must embed its report (embed_report_json) exactly once")
    try:
        embedded = _strict_loads(found[0])
    except ValueError as exc:
        raise AuditFormatError(f"the report data embedded in the HTML is not valid JSON "
                               f"({exc}): embed it with embed_report_json(report)") from None
    if not isinstance(embedded, dict) or report_digest(embedded) != report_digest(report):
        raise AuditFormatError(
            "the report data embedded in the HTML is not the report being sealed: render "
            "the page from this report (embed_report_json(report)), then seal it")
    try:
        document = html.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditFormatError(f"the HTML report is not encodable as UTF-8 ({exc}): remove "
                               "the unpaired surrogate it names") from None
    seal = _make_seal(report, "html", key, _sha256(document))
    return html.replace(SEAL_SLOT_HTML, _seal_element(seal), 1)


def _pypdf() -> ModuleType:
    try:
        import pypdf
    except ImportError:
        raise SDKNotInstalled(
            "sealing or verifying a PDF report needs pypdf, which is not installed: "
            "pip install 'residency-sdk[pdf]'") from None
    return pypdf


def _encode_pdf_seal(seal: Mapping[str, Any]) -> bytes:
    # Hex, like the prefix, is alphanumeric: a PDF tool rewriting the file keeps it literal,
    # so a rewritten file still shows its seal (and fails on the digests, not on parsing).
    return _PDF_PREFIX + _canonical(dict(seal), "seal").hex().encode("ascii")


def seal_pdf(pdf: bytes, report: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    """Seal a PDF rendering of ``report``: attach the report's JSON
    (``residency-report.json``) and write the seal into the ``/ResidencySeal`` slot.

    Raises :class:`AuditFormatError` for input that is not a readable, unencrypted,
    unsealed PDF, :class:`ReportRenderError` when the slot cannot be written in place, and
    :class:`SDKNotInstalled` without pypdf.
    """
    pypdf = _pypdf()
    body = _as_json(_body(report), "report")
    if _PDF_PREFIX in pdf:
        raise AuditFormatError("the PDF is already sealed (it holds a /ResidencySeal slot): "
                               "seal the freshly rendered PDF, once")
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        encrypted = reader.is_encrypted
        attached = PDF_ATTACHMENT in reader.attachments if not encrypted else False
    except Exception as exc:  # pypdf raises many kinds on a damaged file; all mean "unreadable"
        raise AuditFormatError(f"the PDF to seal cannot be read ({type(exc).__name__}: {exc}): "
                               "give the PDF html_to_pdf printed") from None
    if encrypted:
        raise AuditFormatError("the PDF to seal is encrypted: print it unencrypted (as "
                               "html_to_pdf does), then seal it")
    if attached:
        raise AuditFormatError(f"the PDF already has a {PDF_ATTACHMENT} attachment: seal the "
                               "freshly rendered PDF, once")

    # The slot must hold the final seal; every field but the two digests' values is known
    # now and those have fixed lengths, so a probe seal measures it exactly.
    probe = _make_seal(body, "pdf", key, _sha256(b""))
    slot = max(_PDF_MIN_SLOT, len(_encode_pdf_seal(probe)))
    placeholder = _PDF_PREFIX + _PDF_FILL * (slot - len(_PDF_PREFIX))
    attachment = (json.dumps(body, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    try:
        writer = pypdf.PdfWriter(clone_from=reader)
        embedded = writer.add_attachment(PDF_ATTACHMENT, attachment)
        embedded.subtype = pypdf.generic.NameObject("/application/json")
        writer.add_metadata({PDF_SEAL_KEY: placeholder.decode("ascii")})
        buffer = io.BytesIO()
        writer.write(buffer)
    except Exception as exc:  # as above: pypdf's failures have no common base
        raise ReportRenderError(f"the PDF could not be rewritten to take its seal "
                                f"({type(exc).__name__}: {exc})") from None
    unsealed = buffer.getvalue()
    # The slot is overwritten by position, so its bytes must appear literally, once (not
    # escaped, not inside a compressed object stream).
    if unsealed.count(_PDF_PREFIX) != 1 or unsealed.count(placeholder) != 1:
        raise ReportRenderError(
            f"the /ResidencySeal slot is not written literally once in the PDF (its marker "
            f"{_PDF_PREFIX.decode()} occurs {unsealed.count(_PDF_PREFIX)} times), so the seal "
            "cannot be written in place: remove that text from the report if it carries it, "
            "else check the installed pypdf version")
    seal = _make_seal(body, "pdf", key, _sha256(unsealed))
    encoded = _encode_pdf_seal(seal)
    if len(encoded) > slot:
        raise ReportRenderError(
            f"the seal ({len(encoded)} bytes) does not fit its {slot}-byte slot in the PDF: "
            "the report's anchors list is unusually large; seal the JSON or HTML instead")
    at = unsealed.index(placeholder)
    return unsealed[:at] + encoded.ljust(slot, _PDF_PAD) + unsealed[at + slot:]


# --- verification --------------------------------------------------------------------


def verify_report(data: bytes, public_key: Ed25519PublicKey, *,
                  name: str = "report") -> SealCheck:
    """Check the seal of a report document (JSON, HTML or PDF, told apart from the bytes)
    against ``public_key``.

    A failed check (unsealed, altered, sealed by another key, a malformed seal) is a
    :class:`SealCheck` with ``ok`` false and its ``problems``; only bytes that are none
    of the three formats raise :class:`AuditFormatError` (naming ``name``).
    """
    fmt = _detect(data, name)
    if fmt == "pdf":
        return _verify_pdf(data, public_key, name)
    if fmt == "html":
        return _verify_html(data, public_key, name)
    return _verify_json(data, public_key, name)


def _detect(data: bytes, name: str) -> str:
    # A PDF header may follow up to 1 KiB of junk (ISO 32000-1, annex H).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n\f")
    if start.startswith(b"{"):
        return "json"
    lead = start[:65536].lower()
    if start.startswith(b"<") and (b"<html" in lead or b"<!doctype html" in lead):
        return "html"
    what = "empty" if not data else "neither JSON, HTML nor PDF"
    raise AuditFormatError(
        f"{name} is {what}: only a report rendered as JSON (a JSON object), HTML (a page "
        "from the report template) or PDF can be verified; give the sealed report file")


def _failed(fmt: str, problem: str) -> SealCheck:
    return SealCheck(ok=False, format=fmt, problems=(problem,), key_id=None,
                     report_digest=None, chain_head=None, generated_at=None)


def _unsealed(fmt: str, name: str, detail: str) -> SealCheck:
    return _failed(fmt, f"{name} is not sealed ({detail}): render it again with "
                        f"${SIGNING_KEY_ENV} pointing at the signing key")


def _verify_json(data: bytes, public_key: Ed25519PublicKey, name: str) -> SealCheck:
    try:
        document = _strict_loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return _failed("json", f"{name} is not valid UTF-8 (byte {exc.start}): it was damaged "
                               "or altered")
    except ValueError as exc:
        return _failed("json", f"{name} is not valid JSON ({exc}): it was damaged or altered")
    if not isinstance(document, dict):  # pragma: no cover - _detect saw a '{'
        return _failed("json", f"{name} is not a JSON object")
    if "seal" not in document:
        return _unsealed("json", name, "no \"seal\" key")
    seal = document.pop("seal")
    return _check(seal, document, "json", public_key, name, None, [])


def _verify_html(data: bytes, public_key: Ed25519PublicKey, name: str) -> SealCheck:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _failed("html", f"{name} is not valid UTF-8 (byte {exc.start}): it was damaged "
                               "or altered")
    seals = list(_SEAL_ELEMENT.finditer(text))
    if not seals:
        detail = ("its seal slot is empty" if SEAL_SLOT_HTML in text
                  else f"no <script id=\"{SEAL_ID}\"> element")
        return _unsealed("html", name, detail)
    if len(seals) > 1:
        return _failed("html", f"{name} has {len(seals)} seal elements, a sealed report has "
                               "one: seals were added to the page")
    found = seals[0]
    try:
        seal = _strict_loads(found.group(1))
    except ValueError as exc:
        return _failed("html", f"the seal in {name} is not valid JSON ({exc})")
    problems: list[str] = []
    if isinstance(seal, dict) and _seal_text(seal) != found.group(0):
        problems.append("the seal element was edited (it is not as the sealer wrote it)")
    restored = text[:found.start()] + SEAL_SLOT_HTML + text[found.end():]
    document_digest = _sha256(restored.encode("utf-8"))
    body: dict[str, Any] | None = None
    datas = _DATA_ELEMENT.findall(restored)
    if len(datas) != 1:
        problems.append(f"{name} has {len(datas)} <script id=\"{REPORT_DATA_ID}\"> elements, "
                        "not one: the embedded report was removed or duplicated")
    else:
        body = _embedded(datas[0], f"the report data embedded in {name}", problems)
    return _check(seal, body, "html", public_key, name, document_digest, problems)


def _embedded(text: str, what: str, problems: list[str]) -> dict[str, Any] | None:
    """The report a document embeds (``text``, its JSON), or None with the problem noted."""
    try:
        embedded = _strict_loads(text)
    except ValueError as exc:
        problems.append(f"{what} is not valid JSON ({exc})")
        return None
    if not isinstance(embedded, dict):
        problems.append(f"{what} is not a JSON object")
        return None
    return embedded


def _seal_text(seal: dict[str, Any]) -> str | None:
    try:
        return _seal_element(seal)
    except AuditFormatError:
        return None


def _verify_pdf(data: bytes, public_key: Ed25519PublicKey, name: str) -> SealCheck:
    pypdf = _pypdf()
    count = data.count(_PDF_PREFIX)
    if count == 0:
        return _unsealed("pdf", name, f"no {PDF_SEAL_KEY} entry")
    if count > 1:
        return _failed("pdf", f"{name} has {count} seal slots, a sealed report has one: "
                              "seals were added to the file")
    start = data.index(_PDF_PREFIX)
    end = data.find(b")", start)
    if end < 0:
        return _failed("pdf", f"the {PDF_SEAL_KEY} slot in {name} is not terminated: the "
                              "file was damaged or altered")
    value = data[start:end]
    restored = data[:start] + _PDF_PREFIX + _PDF_FILL * (len(value) - len(_PDF_PREFIX)) \
        + data[end:]
    document_digest = _sha256(restored)
    encoded = value[len(_PDF_PREFIX):].rstrip(_PDF_PAD)
    try:
        if not _HEX.fullmatch(encoded):
            raise ValueError("not lowercase hex digits")
        raw = bytes.fromhex(encoded.decode("ascii"))
        seal = _strict_loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        return _failed("pdf", f"the seal in {name} is not hex-encoded JSON ({exc}): the "
                              "file was damaged or altered")
    problems: list[str] = []
    if isinstance(seal, dict):
        try:
            canonical = _canonical(seal, "seal") == raw
        except AuditFormatError:
            canonical = False
        if not canonical or value != _encode_pdf_seal(seal).ljust(len(value), _PDF_PAD):
            problems.append("the seal slot was edited (it is not as the sealer wrote it)")
    body: dict[str, Any] | None = None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        attached = reader.attachments.get(PDF_ATTACHMENT)
    except Exception as exc:  # pypdf raises many kinds on a damaged file: a failed check
        problems.append(f"{name} cannot be read as a PDF ({type(exc).__name__}: {exc})")
    else:
        if not attached:
            problems.append(f"{name} has no {PDF_ATTACHMENT} attachment: the report data was "
                            "removed")
        elif len(attached) != 1:
            problems.append(f"{name} has {len(attached)} {PDF_ATTACHMENT} attachments, not "
                            "one")
        else:
            try:
                text = attached[0].decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"the {PDF_ATTACHMENT} attachment is not UTF-8 ({exc})")
            else:
                body = _embedded(text, f"the {PDF_ATTACHMENT} attachment", problems)
    return _check(seal, body, "pdf", public_key, name, document_digest, problems)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _check(seal: Any, body: dict[str, Any] | None, fmt: str, public_key: Ed25519PublicKey,
           name: str, document_digest: str | None, problems: list[str]) -> SealCheck:
    """Check ``seal`` against the report ``body`` the document carries (None when it could
    not be read) and the ``document_digest`` of the document with its seal slot blank."""
    actual: str | None = None
    if body is not None:
        try:
            actual = report_digest(body)
        except AuditFormatError as exc:
            problems.append(str(exc))

    def result() -> SealCheck:
        sealed = seal if isinstance(seal, dict) else {}
        return SealCheck(ok=not problems, format=fmt, problems=tuple(problems),
                         key_id=_str_or_none(sealed.get("key_id")), report_digest=actual,
                         chain_head=_str_or_none(sealed.get("chain_head")),
                         generated_at=_str_or_none(sealed.get("generated_at")))

    if not isinstance(seal, dict):
        problems.append(f"the seal in {name} is not a JSON object")
        return result()
    if seal.get("schema") != SEAL_SCHEMA:
        problems.append(f"the seal's schema is {seal.get('schema')!r}, not {SEAL_SCHEMA!r}: "
                        "this verifier checks residency.audit.seal/v1 seals only")
        return result()
    missing = [f for f in _SEAL_FIELDS if f not in seal]
    extra = sorted(set(seal) - set(_SEAL_FIELDS))
    if missing or extra:
        problems.append(f"the seal is malformed (missing {missing}, unexpected {extra})")
        return result()
    if seal["algorithm"] != ALGORITHM:
        problems.append(f"the seal's algorithm is {seal['algorithm']!r}, not {ALGORITHM}")
    if seal["format"] != fmt:
        problems.append(f"the seal was made for a {seal['format']!r} document, this is {fmt}: "
                        "a seal cannot be moved to another document")

    expected_key = key_id(public_key)
    if seal["key_id"] != expected_key:
        problems.append(f"sealed with key {seal['key_id']!r}, not with the public key given "
                        f"({expected_key}): verify with the public key of {seal['key_id']!r} "
                        "or treat the report as unauthenticated")
    else:
        _check_signature(seal, public_key, problems)

    if actual is not None and actual != seal["report_digest"]:
        problems.append(f"the report content does not match the seal (digest {actual}, "
                        f"sealed {seal['report_digest']}): it was changed after sealing")
    if fmt == "json":
        if seal["document_digest"] is not None:
            problems.append("a JSON seal has no document_digest, this one has: the seal was "
                            "altered")
    elif seal["document_digest"] != document_digest:
        problems.append(f"the {fmt} document does not match the seal (digest "
                        f"{document_digest}, sealed {seal['document_digest']}): it was "
                        "changed after sealing")
    if body is not None:
        bound = (("chain_head", _chain_head(body), "chain head"),
                 ("anchors", _anchors(body), "anchors"),
                 ("report_schema", body.get("schema"), "schema"),
                 ("generated_at", body.get("generated_at"), "generation time"))
        for field_name, value, label in bound:
            if seal[field_name] != value:
                problems.append(f"the seal binds {label} {seal[field_name]!r} but the report "
                                f"says {value!r}")
    return result()


def _check_signature(seal: dict[str, Any], public_key: Ed25519PublicKey,
                     problems: list[str]) -> None:
    unsigned = {k: v for k, v in seal.items() if k != "signature"}
    signature_text = seal["signature"]
    try:
        if not isinstance(signature_text, str):
            raise ValueError("not a string")
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        problems.append(f"the seal's signature is not base64 ({exc})")
        return
    try:
        message = _canonical(unsigned, "seal")
    except AuditFormatError as exc:
        problems.append(str(exc))
        return
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        problems.append("the seal's signature does not verify: the seal was altered or forged")
