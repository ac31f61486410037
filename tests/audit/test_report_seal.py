"""Sealed reports: a JSON, HTML or PDF report verifies with its signer's public key, and any
change to it (content, layout, embedded data, the seal itself) or another key fails."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from components import require
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from residency_sdk.audit.seal import (
    SEAL_SCHEMA,
    SEAL_SLOT_HTML,
    SIGNING_KEY_ENV,
    SealCheck,
    embed_report_json,
    generate_keypair,
    key_id,
    load_public_key,
    load_signing_key,
    report_digest,
    seal_html,
    seal_json,
    seal_pdf,
    signing_key_from_env,
    verify_report,
)
from residency_sdk.cli.report_seal import keygen, verify
from residency_sdk.errors import (
    AuditError,
    AuditFormatError,
    AuditKeyError,
    ResidencyError,
    SDKNotInstalled,
)

pypdf = require("pypdf", "pip install 'residency-sdk[pdf]'")

REPORT: dict[str, Any] = {
    "schema": "residency.audit.report/v3",
    "generated_at": "2026-11-02T09:00:00+00:00",
    "chain": {"head_hash": "ab" * 32, "status": "verified", "events": 12},
    "anchors": [{"kind": "s3", "ref": "s3://audit-anchors/eu?region=eu-central-1"}],
    "summary": {"flows": 2, "blocked": 1, "bytes": 4500},
    "rows": [
        {"origin": "DE", "destination": "US", "bytes": 4000, "tenant": "acme <&> co"},
        {"origin": "CH", "destination": "GB", "bytes": 500, "tenant": "zürich"},
    ],
}
PAGE_TEXT = "Transfers DE to US"


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_html(report: dict[str, Any], cell: str = "4000") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<style>td { color: #333; }</style></head><body>\n"
        f"<h1>{PAGE_TEXT}</h1>\n"
        f'<table aria-label="flows"><tr><td>DE</td><td>US</td><td>{cell}</td></tr></table>\n'
        '<script type="application/json" id="residency-report-data">'
        f"{embed_report_json(report)}</script>\n{SEAL_SLOT_HTML}\n</body></html>\n")


def make_pdf(text: str = PAGE_TEXT) -> bytes:
    """A one-page PDF with an uncompressed text content stream (no browser needed)."""
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(400, 300)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 18 Tf 40 200 Td ({text}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def problems_text(check: SealCheck) -> str:
    return "\n".join(check.problems)


# --- JSON ------------------------------------------------------------------------------


def test_json_round_trip(key: Ed25519PrivateKey) -> None:
    sealed = seal_json(REPORT, key)
    assert "seal" not in REPORT  # a copy
    seal = sealed["seal"]
    assert seal["schema"] == SEAL_SCHEMA and seal["format"] == "json"
    assert seal["algorithm"] == "Ed25519" and seal["document_digest"] is None
    assert seal["chain_head"] == "ab" * 32 and seal["anchors"] == REPORT["anchors"]
    assert seal["report_schema"] == REPORT["schema"]
    assert seal["report_digest"] == report_digest(REPORT) == report_digest(sealed)
    check = verify_report(json.dumps(sealed, indent=2).encode(), key.public_key())
    assert check == SealCheck(ok=True, format="json", problems=(),
                              key_id=key_id(key.public_key()),
                              report_digest=report_digest(REPORT), chain_head="ab" * 32,
                              generated_at=REPORT["generated_at"])
    # Whitespace and key order are not content.
    reordered = json.dumps(dict(reversed(list(sealed.items()))), separators=(",", ":"))
    assert verify_report(reordered.encode(), key.public_key()).ok


def test_key_id_format(key: Ed25519PrivateKey) -> None:
    assert re.fullmatch(r"ed25519:[0-9a-f]{16}", key_id(key.public_key()))


def test_json_with_one_changed_value_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_json(REPORT, key)
    sealed["rows"][0]["bytes"] = 4001
    check = verify_report(json.dumps(sealed).encode(), key.public_key())
    assert not check.ok and check.format == "json"
    assert "changed after sealing" in problems_text(check)


def test_json_with_changed_chain_head_in_seal_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_json(REPORT, key)
    sealed["seal"]["chain_head"] = "cd" * 32
    check = verify_report(json.dumps(sealed).encode(), key.public_key())
    assert not check.ok
    assert "signature does not verify" in problems_text(check)
    assert "binds chain head" in problems_text(check)


def test_json_whose_chain_head_and_seal_were_both_changed_fails(
        key: Ed25519PrivateKey) -> None:
    sealed = seal_json(REPORT, key)
    sealed["chain"]["head_hash"] = sealed["seal"]["chain_head"] = "cd" * 32
    check = verify_report(json.dumps(sealed).encode(), key.public_key())
    assert not check.ok and "signature does not verify" in problems_text(check)


def test_wrong_public_key_fails(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    sealed = json.dumps(seal_json(REPORT, key)).encode()
    check = verify_report(sealed, other_key.public_key())
    assert not check.ok
    assert f"sealed with key '{key_id(key.public_key())}'" in problems_text(check)
    assert key_id(other_key.public_key()) in problems_text(check)


def test_seal_forged_with_another_key_under_the_right_key_id_fails(
        key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    forged = seal_json(REPORT, other_key)
    honest = seal_json(REPORT, key)
    forged["seal"]["key_id"] = honest["seal"]["key_id"]
    check = verify_report(json.dumps(forged).encode(), key.public_key())
    assert not check.ok and "signature does not verify" in problems_text(check)


def test_unsealed_json_fails_clearly(key: Ed25519PrivateKey) -> None:
    check = verify_report(json.dumps(REPORT).encode(), key.public_key(), name="r.json")
    assert not check.ok and check.key_id is None
    assert "r.json is not sealed" in problems_text(check)
    assert SIGNING_KEY_ENV in problems_text(check)


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.update(schema="residency.audit.seal/v9"), "schema"),
    (lambda s: s.update(signature="not base64!"), "not base64"),
    (lambda s: s.pop("anchors"), "malformed"),
    (lambda s: s.update(format="html"), "made for a 'html' document"),
])
def test_malformed_seal_fails_without_raising(key: Ed25519PrivateKey, mutate: Any,
                                              expected: str) -> None:
    sealed = seal_json(REPORT, key)
    mutate(sealed["seal"])
    check = verify_report(json.dumps(sealed).encode(), key.public_key())
    assert not check.ok and expected in problems_text(check)


def test_seal_that_is_not_an_object_fails(key: Ed25519PrivateKey) -> None:
    sealed = dict(REPORT, seal="sealed, honest")
    check = verify_report(json.dumps(sealed).encode(), key.public_key())
    assert not check.ok and "not a JSON object" in problems_text(check)


def test_damaged_or_ambiguous_json_fails(key: Ed25519PrivateKey) -> None:
    text = json.dumps(seal_json(REPORT, key))
    assert not verify_report(text[:-5].encode(), key.public_key()).ok
    # A duplicate key: readers could disagree about which value the report holds.
    duplicated = text.replace('"summary":', '"summary": {"flows": 0}, "summary":', 1)
    check = verify_report(duplicated.encode(), key.public_key())
    assert not check.ok and "duplicate key" in problems_text(check)


@pytest.mark.parametrize("data", [b"", b"hello, auditor", b"\x89PNG\r\n\x1a\n", b"[1, 2]"])
def test_input_that_is_no_report_raises(key: Ed25519PrivateKey, data: bytes) -> None:
    with pytest.raises(AuditFormatError, match=r"notes\.txt is .*JSON.*HTML.*PDF"):
        verify_report(data, key.public_key(), name="notes.txt")


def test_report_that_is_not_a_report_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(AuditFormatError, match="schema"):
        seal_json({"rows": []}, key)
    with pytest.raises(AuditFormatError, match="not plain JSON"):
        seal_json(dict(REPORT, summary={"ratio": float("nan")}), key)


def test_embed_report_json_cannot_close_the_script() -> None:
    text = embed_report_json({"schema": "x", "note": "</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["note"] == "</script><!-- & -->"


_json_leaf = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
              | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(extra=_json, replacement=_json)
def test_any_json_report_round_trips_and_any_change_fails(
        key: Ed25519PrivateKey, extra: Any, replacement: Any) -> None:
    import rfc8785

    report = dict(REPORT, extra=extra)
    sealed = json.dumps(seal_json(report, key), ensure_ascii=False).encode()
    assert verify_report(sealed, key.public_key()).ok
    assume(rfc8785.dumps(replacement) != rfc8785.dumps(extra))
    changed = seal_json(report, key)
    changed["extra"] = replacement
    assert not verify_report(json.dumps(changed).encode(), key.public_key()).ok


# --- HTML ------------------------------------------------------------------------------


def test_html_round_trip(key: Ed25519PrivateKey) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, key)
    assert SEAL_SLOT_HTML not in sealed
    assert sealed.count('<script type="application/json" id="residency-seal">') == 1
    check = verify_report(sealed.encode(), key.public_key(), name="r.html")
    assert check.ok, check.problems
    assert check.format == "html" and check.chain_head == "ab" * 32
    assert check.report_digest == report_digest(REPORT)


@pytest.mark.parametrize("edit", [
    ("<td>4000</td>", "<td>400</td>"),                 # a table cell
    ("color: #333;", "color: #334;"),                  # the CSS
    ("\n</body>", "</body>"),                          # whitespace
    ("<!DOCTYPE html>", "<!doctype html>"),            # case
])
def test_html_edited_anywhere_fails(key: Ed25519PrivateKey, edit: tuple[str, str]) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, key)
    assert sealed.count(edit[0]) == 1
    check = verify_report(sealed.replace(*edit).encode(), key.public_key())
    assert not check.ok
    assert "html document does not match the seal" in problems_text(check)


def test_html_with_edited_embedded_data_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, key)
    edited = sealed.replace('"bytes":4000', '"bytes":40', 1)
    assert edited != sealed
    check = verify_report(edited.encode(), key.public_key())
    assert not check.ok
    assert "report content does not match the seal" in problems_text(check)


def test_html_with_a_seal_copied_from_another_report_fails(key: Ed25519PrivateKey) -> None:
    seal_of = re.compile(r'<script type="application/json" id="residency-seal">.*?</script>',
                         re.S)
    # Same report, another page (the cell differs): the seal of the real page moved onto a
    # forged one.
    real = seal_html(make_html(REPORT, cell="4000"), REPORT, key)
    forged = seal_html(make_html(REPORT, cell="9"), REPORT, key)
    transplanted = seal_of.sub(lambda _: seal_of.search(real).group(0), forged)  # type: ignore[union-attr]
    assert transplanted != real and transplanted != forged
    check = verify_report(transplanted.encode(), key.public_key())
    assert not check.ok and "html document does not match" in problems_text(check)


def test_html_seal_element_reencoded_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, key)
    edited = sealed.replace('{"schema":"residency.audit.seal/v1"',
                            '{ "schema":"residency.audit.seal/v1"', 1)
    check = verify_report(edited.encode(), key.public_key())
    assert not check.ok and "seal element was edited" in problems_text(check)


def test_html_seal_by_another_key_fails(key: Ed25519PrivateKey,
                                        other_key: Ed25519PrivateKey) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, other_key)
    check = verify_report(sealed.encode(), key.public_key())
    assert not check.ok and "sealed with key" in problems_text(check)


def test_unsealed_html_fails_clearly(key: Ed25519PrivateKey) -> None:
    check = verify_report(make_html(REPORT).encode(), key.public_key(), name="r.html")
    assert not check.ok and check.format == "html"
    assert "r.html is not sealed (its seal slot is empty)" in problems_text(check)


def test_html_seal_json_garbage_fails_without_raising(key: Ed25519PrivateKey) -> None:
    sealed = seal_html(make_html(REPORT), REPORT, key)
    broken = sealed.replace('id="residency-seal">{', 'id="residency-seal">{{', 1)
    check = verify_report(broken.encode(), key.public_key())
    assert not check.ok and "not valid JSON" in problems_text(check)


def test_seal_html_refuses_a_page_it_cannot_seal(key: Ed25519PrivateKey) -> None:
    page = make_html(REPORT)
    with pytest.raises(AuditFormatError, match="0 seal slots"):
        seal_html(page.replace(SEAL_SLOT_HTML, ""), REPORT, key)
    with pytest.raises(AuditFormatError, match="2 seal slots"):
        seal_html(page + SEAL_SLOT_HTML, REPORT, key)
    with pytest.raises(AuditFormatError, match="not the report being sealed"):
        seal_html(page, dict(REPORT, generated_at="2027-01-01"), key)
    with pytest.raises(AuditFormatError, match="already sealed"):
        sealed = seal_html(page, REPORT, key)
        seal_html(sealed + SEAL_SLOT_HTML, REPORT, key)


# --- PDF -------------------------------------------------------------------------------


def test_pdf_round_trip_and_still_a_pdf(key: Ed25519PrivateKey) -> None:
    sealed = seal_pdf(make_pdf(), REPORT, key)
    check = verify_report(sealed, key.public_key(), name="r.pdf")
    assert check.ok, check.problems
    assert check.format == "pdf" and check.key_id == key_id(key.public_key())
    reader = pypdf.PdfReader(io.BytesIO(sealed), strict=True)
    assert PAGE_TEXT in reader.pages[0].extract_text()
    assert json.loads(reader.attachments["residency-report.json"][0]) == REPORT
    assert str(reader.metadata["/ResidencySeal"]).startswith("RESIDENCYSEALV1")
    # The slot is written literally, once, outside any object stream.
    assert sealed.count(b"/ResidencySeal (RESIDENCYSEALV1") == 1
    assert b"/ObjStm" not in sealed


def test_pdf_with_a_flipped_content_byte_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_pdf(make_pdf(), REPORT, key)
    at = sealed.index(f"({PAGE_TEXT}) Tj".encode()) + 1  # inside the page content stream
    flipped = sealed[:at] + bytes([sealed[at] ^ 0x01]) + sealed[at + 1:]
    assert pypdf.PdfReader(io.BytesIO(flipped)).pages[0].extract_text() != PAGE_TEXT
    check = verify_report(flipped, key.public_key())
    assert not check.ok and "pdf document does not match the seal" in problems_text(check)


def test_pdf_with_a_changed_attachment_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_pdf(make_pdf(), REPORT, key)
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(sealed)))
    changed = copy.deepcopy(REPORT)
    changed["rows"][0]["bytes"] = 1
    (attachment,) = list(writer.attachment_list)
    attachment.content = json.dumps(changed).encode()
    out = io.BytesIO()
    writer.write(out)
    check = verify_report(out.getvalue(), key.public_key())
    assert not check.ok
    assert "report content does not match the seal" in problems_text(check)


def test_pdf_seal_slot_edited_fails(key: Ed25519PrivateKey) -> None:
    sealed = seal_pdf(make_pdf(), REPORT, key)
    at = sealed.index(b"RESIDENCYSEALV1") + len(b"RESIDENCYSEALV1") + 3
    swapped = b"A" if sealed[at:at + 1] != b"A" else b"B"
    check = verify_report(sealed[:at] + swapped + sealed[at + 1:], key.public_key())
    assert not check.ok  # either not base64/JSON any more, or a seal that does not verify


def test_pdf_with_bytes_appended_fails(key: Ed25519PrivateKey) -> None:
    # An incremental update appended after sealing is a change like any other.
    sealed = seal_pdf(make_pdf(), REPORT, key)
    check = verify_report(sealed + b"\n% appended\n", key.public_key())
    assert not check.ok and "pdf document does not match" in problems_text(check)


def test_unsealed_pdf_and_other_key(key: Ed25519PrivateKey,
                                    other_key: Ed25519PrivateKey) -> None:
    check = verify_report(make_pdf(), key.public_key(), name="plain.pdf")
    assert not check.ok and "plain.pdf is not sealed" in problems_text(check)
    check = verify_report(seal_pdf(make_pdf(), REPORT, other_key), key.public_key())
    assert not check.ok and "sealed with key" in problems_text(check)


def test_seal_pdf_refuses_to_seal_twice_or_garbage(key: Ed25519PrivateKey) -> None:
    with pytest.raises(AuditFormatError, match="already sealed"):
        seal_pdf(seal_pdf(make_pdf(), REPORT, key), REPORT, key)
    with pytest.raises(AuditFormatError, match="cannot be read"):
        seal_pdf(b"%PDF-1.7 not really", REPORT, key)


def test_pdf_seal_grows_its_slot_for_a_large_report(key: Ed25519PrivateKey) -> None:
    anchors = [{"kind": "s3", "ref": f"s3://anchors-{i}/prefix?region=eu-west-1"}
               for i in range(100)]
    report = dict(REPORT, anchors=anchors)
    check = verify_report(seal_pdf(make_pdf(), report, key), key.public_key())
    assert check.ok, check.problems


def test_pdf_without_pypdf_names_the_extra(key: Ed25519PrivateKey,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pypdf", None)
    with pytest.raises(SDKNotInstalled, match=r"pip install 'residency-sdk\[pdf\]'"):
        seal_pdf(b"%PDF-1.7", REPORT, key)
    with pytest.raises(SDKNotInstalled, match=r"residency-sdk\[pdf\]"):
        verify_report(b"%PDF-1.7", key.public_key())


# --- keys ------------------------------------------------------------------------------


def test_generate_keypair(tmp_path: Path) -> None:
    private, public = tmp_path / "seal.key", tmp_path / "seal.key.pub"
    kid = generate_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signing = load_signing_key(private)
    assert kid == key_id(signing.public_key()) == key_id(load_public_key(public))
    with pytest.raises(AuditKeyError, match=rf"refusing to overwrite {re.escape(str(private))}"):
        generate_keypair(private, tmp_path / "other.pub")
    with pytest.raises(AuditKeyError, match=rf"refusing to overwrite {re.escape(str(public))}"):
        generate_keypair(tmp_path / "other.key", public)
    assert not (tmp_path / "other.key").exists()  # nothing half-written
    assert load_signing_key(private).private_bytes_raw() == signing.private_bytes_raw()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_load_signing_key_refuses_rsa_garbage_and_missing(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = _write(tmp_path / "rsa.pem", rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(AuditKeyError, match=rf"{re.escape(str(rsa_pem))} is a RSA key, not "
                                            r"Ed25519.*keygen"):
        load_signing_key(rsa_pem)
    garbage = _write(tmp_path / "garbage.pem", b"this is not a key\n")
    with pytest.raises(AuditFormatError, match=rf"{re.escape(str(garbage))} is not a PEM"):
        load_signing_key(garbage)
    with pytest.raises(AuditKeyError, match="does not exist"):
        load_signing_key(tmp_path / "missing.pem")
    encrypted = _write(tmp_path / "enc.pem", Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(AuditKeyError, match="is encrypted"):
        load_signing_key(encrypted)
    public = _write(tmp_path / "pub.pem", Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(AuditFormatError, match="is a public key"):
        load_signing_key(public)
    # All of them are the project's errors, so a caller catches one type.
    assert issubclass(AuditKeyError, AuditError) and issubclass(AuditFormatError, ResidencyError)


def test_load_public_key_accepts_openssh_and_refuses_private(tmp_path: Path,
                                                             key: Ed25519PrivateKey) -> None:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH)
    ssh = _write(tmp_path / "id_ed25519.pub", line + b" auditor@example\n")
    assert key_id(load_public_key(ssh)) == key_id(key.public_key())
    private = _write(tmp_path / "private.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(AuditKeyError, match="holds a private key"):
        load_public_key(private)
    garbage = _write(tmp_path / "garbage.pub", b"nope")
    with pytest.raises(AuditFormatError, match=re.escape(str(garbage))):
        load_public_key(garbage)
    rsa_pub = _write(tmp_path / "rsa.pub", rsa.generate_private_key(
        public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(AuditKeyError, match="RSA key, not Ed25519"):
        load_public_key(rsa_pub)


def test_signing_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    assert signing_key_from_env() is None
    monkeypatch.setenv(SIGNING_KEY_ENV, "  ")
    assert signing_key_from_env() is None
    kid = generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    monkeypatch.setenv(SIGNING_KEY_ENV, str(tmp_path / "k"))
    env_key = signing_key_from_env()
    assert env_key is not None and key_id(env_key.public_key()) == kid
    monkeypatch.setenv(SIGNING_KEY_ENV, str(tmp_path / "nope"))
    with pytest.raises(AuditKeyError, match=rf"nope \(from \${SIGNING_KEY_ENV}\)"):
        signing_key_from_env()


# --- CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("verify")(verify)
    app.command("keygen")(keygen)
    return app


def test_cli_keygen_and_verify(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "seal.key"
    done = runner.invoke(cli, ["keygen", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "seal.key.pub").exists() and SIGNING_KEY_ENV in done.stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    again = runner.invoke(cli, ["keygen", "--out", str(out)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    assert isinstance(again.exception, SystemExit)  # a clean message, no traceback

    signing = load_signing_key(out)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(seal_json(REPORT, signing)), encoding="utf-8")
    pub = str(tmp_path / "seal.key.pub")
    ok = runner.invoke(cli, ["verify", str(report), "--public-key", pub])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == (
        f"sealed report OK: json, key {key_id(signing.public_key())}, chain head "
        f"{'ab' * 8}…, generated {REPORT['generated_at']}")

    as_json = runner.invoke(cli, ["verify", str(report), "--public-key", pub, "--json"])
    assert as_json.exit_code == 0
    payload = json.loads(as_json.stdout)
    assert payload["ok"] is True and payload["format"] == "json"
    assert payload["report"] == str(report) and payload["problems"] == []

    tampered = json.loads(report.read_text(encoding="utf-8"))
    tampered["summary"]["blocked"] = 0
    report.write_text(json.dumps(tampered), encoding="utf-8")
    bad = runner.invoke(cli, ["verify", str(report), "--public-key", pub])
    assert bad.exit_code == 1
    assert "sealed report FAILED" in bad.stderr and "changed after sealing" in bad.stderr
    bad_json = runner.invoke(cli, ["verify", str(report), "--public-key", pub, "--json"])
    assert bad_json.exit_code == 1 and json.loads(bad_json.stdout)["ok"] is False


def test_cli_verify_errors_are_clean(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    garbage = _write(tmp_path / "garbage.pub", b"nope")
    report = _write(tmp_path / "notes.txt", b"plain text")
    done = runner.invoke(cli, ["verify", str(report), "--public-key", str(garbage)])
    assert done.exit_code == 2 and "garbage.pub" in done.stderr
    assert isinstance(done.exception, SystemExit)
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    done = runner.invoke(cli, ["verify", str(report), "--public-key", str(tmp_path / "k.pub"),
                               "--json"])
    assert done.exit_code == 2
    payload = json.loads(done.stdout)
    assert payload["ok"] is False and payload["error_type"] == "AuditFormatError"
    assert "notes.txt" in payload["error"]
    missing = runner.invoke(cli, ["verify", str(tmp_path / "nope.json"), "--public-key",
                                  str(tmp_path / "k.pub")])
    assert missing.exit_code == 2  # typer: the argument must exist
