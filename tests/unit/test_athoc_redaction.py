"""Secrets never leave the AtHoc client: the Redactor (shared.athoc.redaction)."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from shared.athoc.redaction import Redactor

# ---------------------------------------------------------------- redaction


def test_redactor_removes_secrets_tokens_and_bearer_values() -> None:
    redact = Redactor("password-value", "client-secret-value")
    redact.add("eyJhbGciOi.access.token")
    text = (
        'bad password-value for client-secret-value; {"access_token": "abc", "refresh_token":"def"} '
        "Authorization: Bearer eyJhbGciOi.access.token and Bearer other-token"
    )
    cleaned = redact(text)
    for secret in ("password-value", "client-secret-value", "eyJhbGciOi.access.token", '"abc"', '"def"', "other-token"):
        assert secret not in cleaned
    assert cleaned.count("***") >= 5


@pytest.mark.parametrize("secret", ["P@ss w/rd&x", "Sécret/+&=x y", 'quote"back\\slash'])
def test_redactor_removes_encoded_and_escaped_forms_of_the_credentials(secret: str) -> None:
    redact = Redactor(secret, "client-secret-value")
    escaped = json.dumps(secret)[1:-1]
    for form in (
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        quote(secret),
        escaped,
        escaped.replace("/", "\\/"),
    ):
        assert form not in redact(f"server said: {form}."), form
    echoed = "grant_type=password&username=svc&password=whatever%21&client_secret=other&refresh_token=r1&scope=x"
    cleaned = redact(echoed)
    assert cleaned == "grant_type=password&username=svc&password=***&client_secret=***&refresh_token=***&scope=x"
    assert redact('{"password": "a\\"b", "client_secret":"c"}') == '{"password": "***", "client_secret":"***"}'


def test_redactor_keeps_its_list_bounded_but_the_credentials() -> None:
    redact = Redactor("password-value", "client-secret-value")
    for i in range(200):
        redact.add(f"token-{i:04d}-xyz")
    assert "password-value" not in redact("password-value")
    assert "client-secret-value" not in redact("client-secret-value")
    assert "token-0199-xyz" not in redact("token-0199-xyz")
