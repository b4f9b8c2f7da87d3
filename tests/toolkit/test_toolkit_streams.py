"""Stream names built and signed as turbo-rails does (spec §8.2, §8.3): known answers."""

from __future__ import annotations

import base64
import doctest
import uuid

import pytest

import cableway.toolkit.streams
from cableway.auth.signed_streams import verify_signed_stream_name
from cableway.toolkit.streams import (
    gid_param,
    sign_stream_name,
    signed_stream_name,
    stream_name_from,
)


class Model:
    """An application model exposing Rails' hook."""

    def __init__(self, name: str, id: object) -> None:
        self.name, self.id = name, id

    def to_gid_param(self) -> str:
        return gid_param("myapp", self.name, self.id)


class Param:
    def __init__(self, value: str) -> None:
        self.value = value

    def to_param(self) -> str:
        return self.value


class NoGid(Param):
    """to_gid_param returning None falls back to to_param, like Ruby's ``try(...) ||``."""

    def to_gid_param(self) -> None:
        return None


@pytest.mark.parametrize(
    ("secret", "stream", "signed"),
    [
        (
            "s3Krit",
            "chat/2023",
            "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c",
        ),
        (
            "secret",
            "notifications/17",
            "Im5vdGlmaWNhdGlvbnMvMTci--05577ac2d36b12b90805c977b8cc0141521f14a0b4e5a0df4a1ac0fc4165370a",
        ),
    ],
)
def test_spec_signing_vectors(secret: str, stream: str, signed: str) -> None:
    assert signed_stream_name(stream, secret=secret) == signed
    assert sign_stream_name(stream, secret) == signed
    assert verify_signed_stream_name(signed, secret) == stream


def test_gid_param_known_answer() -> None:
    assert gid_param("myapp", "Room", 1) == "Z2lkOi8vbXlhcHAvUm9vbS8x"
    assert base64.urlsafe_b64decode("Z2lkOi8vbXlhcHAvUm9vbS8x==") == b"gid://myapp/Room/1"


def test_gid_param_is_url_safe_and_unpadded() -> None:
    # 'gid://myapp/Room/12' is 19 bytes: standard Base64 would end in '='
    assert gid_param("myapp", "Room", 12) == "Z2lkOi8vbXlhcHAvUm9vbS8xMg"
    # standard Base64 of 'gid://a/B/~~~' is 'Z2lkOi8vYS9CL35+fg==': '+' -> '-', no padding
    assert gid_param("a", "B", "~~~") == "Z2lkOi8vYS9CL35-fg"


def test_gid_param_escapes_ids_like_cgi_escape() -> None:
    def decoded(param: str) -> str:
        return base64.urlsafe_b64decode(param + "=" * (-len(param) % 4)).decode()

    assert decoded(gid_param("app", "Doc", "a b/c?d~e_f.g-h")) == (
        "gid://app/Doc/a+b%2Fc%3Fd~e_f.g-h"
    )
    assert decoded(gid_param("app", "Admin::User", 5)) == "gid://app/Admin::User/5"
    # composite primary key: each part escaped, joined with "/"
    assert decoded(gid_param("app", "Line", ("t 1", 7))) == "gid://app/Line/t+1/7"
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert decoded(gid_param("app", "Item", u)) == f"gid://app/Item/{u}"


@pytest.mark.parametrize(
    "bad", [("", "Room", 1), ("app", "", 1), ("app", "Room", ""), ("app", "Room", ())]
)
def test_gid_param_refuses_empty_parts(bad: tuple[str, str, object]) -> None:
    with pytest.raises(ValueError, match="gid_param"):
        gid_param(*bad)


def test_turbo_stream_from_room_messages() -> None:
    room = Model("Room", 1)
    assert stream_name_from(room, "messages") == "Z2lkOi8vbXlhcHAvUm9vbS8x:messages"
    assert stream_name_from([room, "messages"]) == "Z2lkOi8vbXlhcHAvUm9vbS8x:messages"
    assert signed_stream_name(room, "messages", secret="s3Krit") == sign_stream_name(
        "Z2lkOi8vbXlhcHAvUm9vbS8x:messages", "s3Krit"
    )


def test_parts_are_flattened_and_joined_with_colons() -> None:
    assert stream_name_from("chat") == "chat"
    assert stream_name_from("a", ["b", ("c", [1, 2.5])], 3) == "a:b:c:1:2.5:3"
    assert stream_name_from(True, False) == "true:false"
    assert stream_name_from(Param("p-1"), NoGid("fallback")) == "p-1:fallback"
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert stream_name_from("item", u) == f"item:{u}"


@pytest.mark.parametrize("bad", [None, b"bytes", {"a": 1}, object()])
def test_unsupported_parts_raise_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="stream name"):
        stream_name_from("chat", bad)


def test_hooks_must_return_strings() -> None:
    class Bad:
        def to_param(self) -> int:
            return 5

    with pytest.raises(TypeError, match="to_param"):
        stream_name_from(Bad())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_floats_raise(bad: float) -> None:
    with pytest.raises(ValueError, match="stream name"):
        stream_name_from(bad)


def test_empty_names_and_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        stream_name_from()
    with pytest.raises(ValueError, match="empty"):
        stream_name_from("")
    with pytest.raises(ValueError, match="empty secret"):
        signed_stream_name("chat", secret="")


def test_non_ascii_names_sign_as_ruby_json_dump_does() -> None:
    # Ruby's JSON.dump writes UTF-8 as is; the server verifies either way
    signed = signed_stream_name("café/1", secret="k")
    payload = base64.b64decode(signed.split("--")[0])
    assert payload == '"café/1"'.encode()
    assert verify_signed_stream_name(signed, "k") == "café/1"


def test_module_doctests() -> None:
    failures, tried = doctest.testmod(cableway.toolkit.streams)
    assert tried > 0
    assert failures == 0
