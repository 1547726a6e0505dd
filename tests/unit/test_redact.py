"""Redaction: passwords, tokens and secret values masked in whatever OmniQ shows."""

from __future__ import annotations

import pytest

from omniq._redact import redact, redact_value


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:p@ss@host/0?db=1", "redis://:***@host/0?db=1"),
        ("redis://host:6379/0?password=pw", "redis://host:6379/0?password=***"),
        (
            "postgresql://u:pw@db/app?sslpassword=pw&x=1",
            "postgresql://u:***@db/app?sslpassword=***&x=1",
        ),
        ("host=db password='a b' dbname=x", "host=db password=*** dbname=x"),
        ("nats://a:pw@h1:4222,nats://b:pw@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
        ("nats://tok@h:4222", "nats://***@h:4222"),
        ("cannot reach redis://u:pw@h:1: refused", "cannot reach redis://u:***@h:1: refused"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("sqlite:///a.db", "sqlite:///a.db"),
    ],
)
def test_redact_masks_credentials_only(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_value_masks_secret_names_and_urls_inside_containers() -> None:
    assert redact_value("SECRET_KEY", "k") == "***"
    assert redact_value("password", "pw") == "***"
    assert redact_value("servers", ["nats://t@h"]) == ["nats://***@h"]
    assert redact_value("connect_options", {"token": "t", "name": "x"}) == {
        "token": "***",
        "name": "x",
    }
    assert redact_value("url", None) is None
