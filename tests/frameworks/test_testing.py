"""cableway.testing: the broadcast capture, its assertions, the simulated client, the plugin;
and that none of it (nor ``import cableway``) imports a web framework."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cableway.auth import sign_stream_name
from cableway.testing import BroadcastCapture, ConnectionRejected, SimulatedClient
from cableway.testing import capture_broadcasts as capture_broadcasts_
from cableway.toolkit import turbo_stream
from cableway.toolkit.integration import IntegrationSettings, Publisher
from cableway.toolkit.tokens import identification_token

SECRET = "testing-secret"
SETTINGS = IntegrationSettings(secret=SECRET)
FRAMEWORKS = ("django", "flask", "jinja2", "fastapi", "starlette", "markupsafe", "httpx2")


def _publish(stream: str, data: object) -> None:
    Publisher(SETTINGS).broadcast(stream, data)


def test_assert_broadcasts_counts_per_stream() -> None:
    with capture_broadcasts_(SETTINGS) as capture:
        _publish("room:1", "<a>")
        _publish("room:1", "<b>")
        _publish("room:2", {"n": 1})
    capture.assert_broadcasts("room:1", 2)
    capture.assert_broadcasts(("room", 2), 1)
    capture.assert_no_broadcasts("room:3")
    with pytest.raises(AssertionError, match=r"1 broadcast\(s\) expected on 'room:1', 2 sent"):
        capture.assert_broadcasts("room:1", 1)
    with pytest.raises(AssertionError, match="no broadcasts expected"):
        capture.assert_no_broadcasts()


def test_assert_broadcast_on_html_or_predicate() -> None:
    with capture_broadcasts_(SETTINGS) as capture:
        _publish("s", turbo_stream.append("list", "<p>x</p>"))
    assert capture.assert_broadcast_on("s", turbo_stream.append("list", "<p>x</p>"))
    capture.assert_broadcast_on("s", lambda html: "<p>x</p>" in str(html))
    with pytest.raises(AssertionError, match="no broadcast on 's' matches"):
        capture.assert_broadcast_on("s", "<p>x</p>")
    with pytest.raises(AssertionError):
        capture.assert_broadcast_on("s", lambda html: False)


def test_nothing_is_captured_outside_the_block() -> None:
    with capture_broadcasts_(SETTINGS) as capture:
        pass
    with capture_broadcasts_(SETTINGS) as other:
        _publish("s", 1)
    capture.assert_no_broadcasts()
    other.assert_broadcasts("s", 1)


def test_simulated_client_receives_what_the_server_would_send() -> None:
    capture = BroadcastCapture(SETTINGS)
    token = identification_token({"user_id": 5}, SECRET)
    client = capture.connect(token)
    assert client.messages[0] == {"type": "welcome", "sid": client.sid}
    assert client.identifiers == {"user_id": 5}
    signed = sign_stream_name("room:1", SECRET)
    assert client.subscribe(signed)
    capture.record("room:1", "<turbo-stream></turbo-stream>")
    capture.record("room:2", "not mine")
    capture.record("room:1", {"json": True})
    identifier = json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed})
    assert client.messages[-2] == {
        "identifier": identifier.replace(", ", ",").replace(": ", ":"),
        "message": "<turbo-stream></turbo-stream>",
    }
    assert client.received == ["<turbo-stream></turbo-stream>", {"json": True}]
    assert client.turbo_streams == ["<turbo-stream></turbo-stream>"]
    client.unsubscribe(signed)
    capture.record("room:1", "after")
    assert client.received[-1] == {"json": True}


def test_simulated_client_refuses_what_the_server_refuses() -> None:
    with pytest.raises(ConnectionRejected, match="unauthorized"):
        SimulatedClient(jwt_secret=SECRET, turbo_secret=SECRET, token="not-a-jwt")
    expired = identification_token({"u": 1}, SECRET, expires_in=10, now=1000)
    with pytest.raises(ConnectionRejected, match="token_expired"):
        SimulatedClient(jwt_secret=SECRET, turbo_secret=SECRET, token=expired)
    other = identification_token({"u": 1}, "another-secret")
    with pytest.raises(ConnectionRejected):
        SimulatedClient(jwt_secret=SECRET, turbo_secret=SECRET, token=other)
    with pytest.raises(ConnectionRejected):
        SimulatedClient(jwt_secret=SECRET, turbo_secret=SECRET, enforce_jwt=True)
    anonymous = SimulatedClient(jwt_secret=SECRET, turbo_secret=SECRET)
    assert anonymous.identifiers == {"sid": anonymous.sid}
    assert not anonymous.subscribe(sign_stream_name("room:1", "wrong-secret"))
    assert not anonymous.subscribe("room:1")
    assert anonymous.streams == set()


def _run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_importing_cableway_imports_no_web_framework() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import cableway, cableway.toolkit.integration, cableway.testing, cableway.testing.plugin
        import cableway.toolkit.streams, cableway.toolkit.tokens, cableway.toolkit.broadcaster, cableway.toolkit.turbo_stream
        import cableway.cli
        loaded = sorted(name for name in {FRAMEWORKS!r} if name in sys.modules)
        print(loaded)
        """
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_pytest_plugin_is_registered_and_imports_no_framework(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            from cableway.toolkit.integration import IntegrationSettings, Publisher

            def test_capture(cableway_broadcasts):
                Publisher(IntegrationSettings(secret="x")).broadcast("s", "<p>")
                cableway_broadcasts.assert_broadcasts("s", 1)
                assert not [n for n in {FRAMEWORKS!r} if n in sys.modules]
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_open_page_connects_and_subscribes_as_the_page_would() -> None:
    from cableway.toolkit.integration import cable_meta_tag, turbo_stream_source

    capture = BroadcastCapture(SETTINGS)
    html = (
        cable_meta_tag(SETTINGS, {"user_id": 3})
        + turbo_stream_source(SETTINGS, "room", 1)
        + turbo_stream_source(SETTINGS, "room", 2, sse=True)  # SSE: not an Action Cable stream
    )
    page = capture.open_page(html)
    assert page.identifiers == {"user_id": 3}
    assert page.streams == {"room:1"}
    capture.record("room:1", "<x>")
    assert page.turbo_streams == ["<x>"]
    anonymous = capture.open_page("<p>no cable here</p>")
    assert anonymous.identifiers == {"sid": anonymous.sid}
    forged = '<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="a--b">'
    with pytest.raises(AssertionError, match="would reject"):
        capture.open_page(forged)


def test_stream_source_attributes_are_escaped_and_names_checked() -> None:
    from cableway.toolkit.integration import turbo_stream_source

    html = turbo_stream_source(SETTINGS, "s", id='a"b', class_="x<y", data_role="r")
    assert ' id="a&quot;b" class="x&lt;y" data-role="r"' in html
    for bad in ({"onclick x": "1"}, {"src": "http://evil/"}, {"signed_stream_name": "n"}):
        with pytest.raises(ValueError, match="invalid attribute"):
            turbo_stream_source(SETTINGS, "s", **bad)
