"""Unit tests of redaction (redact.py)."""

from __future__ import annotations

import pytest

from chaoscloudevents.redact import MASK, Redactor, sanitize_url

SECRETS = {
    "k8s": {"token": "tok-123456", "nested": {"password": "hunter2-pass"}},
    "db": {"pin": 987654, "flag": True},
}
CONFIGURATION = {
    "db_host": "db.internal.example",
    "namespace": "payments-prod",
    "timeout": 30,
    "list": ["first-item", {"deep": "deep-value"}],
    "short": "eu",
    "public_region": "eu-de-1",
}


@pytest.fixture
def redactor() -> Redactor:
    return Redactor.for_run(CONFIGURATION, SECRETS, public_configuration_keys=["public_region"])


@pytest.mark.parametrize(
    "value",
    [
        "tok-123456",
        "hunter2-pass",
        "987654",
        "db.internal.example",
        "payments-prod",
        "first-item",
        "deep-value",
    ],
)
def test_every_secret_and_configuration_value_is_masked(redactor: Redactor, value: str) -> None:
    assert redactor.scrub_text(f"before {value} after") == f"before {MASK} after"


def test_public_configuration_keys_and_short_values_are_kept(redactor: Redactor) -> None:
    text = "region eu-de-1 in eu, timeout 30"
    assert redactor.scrub_text(text) == text


def test_booleans_are_not_values_to_mask(redactor: Redactor) -> None:
    assert redactor.scrub({"ok": True, "text": "True"}) == {"ok": True, "text": "True"}


def test_nested_structures_keys_and_numbers(redactor: Redactor) -> None:
    value = {"token tok-123456": ["x hunter2-pass y", {"pin": 987654, "n": 1}], "none": None}
    assert redactor.scrub(value) == {
        f"token {MASK}": [f"x {MASK} y", {"pin": MASK, "n": 1}],
        "none": None,
    }


def test_url_encoded_forms_are_masked_too() -> None:
    r = Redactor(["p@ss word/1"])
    assert r.scrub_text("https://h/?pw=p%40ss%20word%2F1&x=1") == f"https://h/?pw={MASK}&x=1"


def test_longest_value_wins_when_values_overlap() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r.scrub_text("xabcdefghx abcdx") == f"x{MASK}x {MASK}x"


def test_regex_metacharacters_are_literal() -> None:
    r = Redactor(["a.b*c(d)"])
    assert r.scrub_text("a.b*c(d) aXbbc(d)") == f"{MASK} aXbbc(d)"


def test_empty_redactor_is_identity() -> None:
    r = Redactor.for_run(None, None)
    assert not r
    value = {"a": ["b"]}
    assert r.scrub(value) is value and r.scrub_text("x") == "x"


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "https://user:secret@api.example.com:8443/p/a?token=abc#frag",
            "https://api.example.com:8443/p/a",
        ),
        ("http://api.example.com/", "http://api.example.com/"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("${base_url}/health", "${base_url}/health"),
    ],
)
def test_sanitize_url(url: str, expected: str) -> None:
    assert sanitize_url(url) == expected
