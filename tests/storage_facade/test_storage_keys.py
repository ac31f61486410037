"""Object-key and tenant-prefix validation."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residency_sdk.errors import InvalidKey
from residency_sdk.model import Tenant
from residency_sdk.storage.keys import (
    MAX_KEY_BYTES,
    relative_key,
    tenant_key,
    tenant_list_prefix,
    tenant_prefix,
    validate_key,
    validate_prefix,
)

TENANT = Tenant(id="clinic-17", country="DE")


@pytest.mark.parametrize("key", [
    "studies/123/img.dcm", "a", "ünïcödé/файл.dcm", "with space/x y", "@at/@@", ".hidden/x",
    "a" * 255, "x/" * 100 + "y", "emoji/🩻.png",
])
def test_valid_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == unicodedata.normalize("NFC", key)


@pytest.mark.parametrize(("key", "fragment"), [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../other/x", "'..'"),
    ("a/../../b", "'..'"),
    ("a/./b", "'.'"),
    ("a//b", "empty segment"),
    ("a/", "empty segment"),
    ("a\\b", "backslash"),
    ("a\x00b", "control"),
    ("line\nbreak", "control"),
    ("del\x7f", "control"),
    ("c1\x85", "control"),
    ("rtl\u202eexe.gpj", "bidirectional"),
    ("bom\ufeff", "bidirectional"),
    ("non\ufffe", "noncharacter"),
    ("lone\ud800", "surrogate"),
    ("trailing.", "ends with '.'"),
    ("x" * 256, "segment longer"),
    ("ab/" * 400 + "c", "bytes"),
])
def test_unsafe_keys_are_refused(key: str, fragment: str) -> None:
    with pytest.raises(InvalidKey, match=fragment):
        validate_key(key)


def test_non_string_key_is_refused() -> None:
    with pytest.raises(InvalidKey, match="string"):
        validate_key(b"bytes-key")


def test_keys_are_nfc_normalised() -> None:
    decomposed = "cafe\u0301/x"  # e + combining acute
    assert validate_key(decomposed) == "caf\u00e9/x"
    assert tenant_key(TENANT, decomposed) == tenant_key(TENANT, "caf\u00e9/x")


def test_tenant_key_length_limit_counts_the_prefix() -> None:
    room = MAX_KEY_BYTES - len(tenant_prefix(TENANT).encode())
    key = ("a" * 250 + "/") * 3 + "b" * (room - 3 * 251)
    assert len(key.encode()) == room
    assert len(tenant_key(TENANT, key).encode()) == MAX_KEY_BYTES
    with pytest.raises(InvalidKey, match="bytes"):
        tenant_key(TENANT, key + "c")
    with pytest.raises(InvalidKey, match="bytes"):  # multi-byte characters count as bytes
        tenant_key(TENANT, key[:-1] + "é")


def test_tenant_prefix_and_relative_key() -> None:
    assert tenant_prefix(TENANT) == "tenants/clinic-17/"
    stored = tenant_key(TENANT, "studies/1.dcm")
    assert stored == "tenants/clinic-17/studies/1.dcm"
    assert relative_key(TENANT, stored) == "studies/1.dcm"
    for foreign in ("tenants/clinic-170/x", "tenants/clinic-1/x", "tenants/clinic-17/",
                    "other/clinic-17/x"):
        with pytest.raises(InvalidKey, match="outside the tenant prefix"):
            relative_key(TENANT, foreign)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x..y", "a\\b", 17])
def test_hand_built_tenant_ids_cannot_widen_the_prefix(bad: object) -> None:
    with pytest.raises(InvalidKey):
        tenant_prefix(bad)  # type: ignore[arg-type]


def test_list_prefixes() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("studies/") == "studies/"
    assert validate_prefix("studies/12") == "studies/12"
    assert tenant_list_prefix(TENANT) == "tenants/clinic-17/"
    assert tenant_list_prefix(TENANT, "st") == "tenants/clinic-17/st"
    for bad in ("/x", "../", "a/../b", "a//", "..", "a/..", "a\x00"):
        with pytest.raises(InvalidKey):
            tenant_list_prefix(TENANT, bad)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_key_is_refused_or_stays_under_the_tenant_prefix(key: str) -> None:
    try:
        stored = tenant_key(TENANT, key)
    except InvalidKey:
        return
    assert stored.startswith("tenants/clinic-17/")
    rel = relative_key(TENANT, stored)
    segments = rel.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert "\\" not in rel and not rel.startswith("/")
    assert not any(unicodedata.category(ch) == "Cc" for ch in rel)
    assert len(stored.encode("utf-8")) <= MAX_KEY_BYTES
    assert rel == unicodedata.normalize("NFC", key)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "", "a", "b", "tenants", "clinic-18", "\\", "%2e"]),
                min_size=1, max_size=8))
def test_path_tricks_never_reach_another_tenant(parts: list[str]) -> None:
    key = "/".join(parts)
    try:
        stored = tenant_key(TENANT, key)
    except InvalidKey:
        return
    assert stored.startswith("tenants/clinic-17/")
    assert not stored.startswith("tenants/clinic-18/")
    assert relative_key(TENANT, stored) == key


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60)
       | st.text(alphabet=st.sampled_from("ab/\\\x00\x1f\x7f é\u202e\ufeff"), max_size=20))
@settings(max_examples=400, deadline=None)
def test_the_ascii_fast_path_accepts_and_refuses_exactly_what_the_full_check_does(
        text: str) -> None:
    # The full check, character by character, as the key rules state it.
    from residency_sdk.storage import keys

    refused_by_rules = any(keys._bad_char(ch) is not None for ch in text)
    try:
        checked = keys._check_text(text, "key")
    except InvalidKey:
        assert refused_by_rules, text
    else:
        assert not refused_by_rules, text
        assert checked == unicodedata.normalize("NFC", text)
