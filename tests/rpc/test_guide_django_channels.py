"""docs/guides/channels-django.md stays true: its code blocks are the example's files
(examples/django_channels, whose own tests and tests/interop/test_django_channels_rpc.py
run them), and its command line is one Cableway accepts, calling the application where the
example mounts it and forwarding the session cookie."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cableway.cli import parse_args
from cableway.rpc import derive_rpc_key

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "channels-django.md"
EXAMPLE = ROOT / "examples" / "django_channels"


def blocks(language: str) -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """(file named on the first line, the rest) of every ```python block."""
    found = []
    for block in blocks("python"):
        first, _, rest = block.partition("\n")
        assert first.startswith("# "), f"a python block names its file first:\n{block}"
        found.append((first[2:].strip(), rest))
    return found


@pytest.mark.parametrize(("path", "code"), python_blocks())
def test_each_python_block_is_in_the_example_file_it_names(path: str, code: str) -> None:
    source = (EXAMPLE / path).read_text(encoding="utf-8")
    assert code.strip() in source, f"{path} no longer contains:\n{code}"


def test_the_page_script_is_the_examples() -> None:
    (script,) = blocks("html")
    template = (EXAMPLE / "rooms" / "templates" / "rooms" / "room.html").read_text("utf-8")
    assert script.strip() in template


def test_the_command_line_calls_the_mounted_app_with_the_session_cookie() -> None:
    shell = blocks("sh")
    (run,) = [block for block in shell if "cableway --rpc_host" in block]
    secret = re.search(r"^export ANYCABLE_SECRET=(\S+)$", run, flags=re.MULTILINE)
    assert secret is not None
    (line,) = [line for line in run.splitlines() if line.startswith("cableway ")]

    config = parse_args(shlex.split(line)[1:], {"ANYCABLE_SECRET": secret.group(1)})

    assert config.rpc is not None
    assert config.rpc.host.endswith("/_anycable")  # where roomsite/asgi.py mounts it
    assert "/_anycable/" in (EXAMPLE / "roomsite" / "asgi.py").read_text("utf-8")
    assert config.rpc.key == derive_rpc_key(secret.group(1))  # what Application(secret=) checks
    assert "cookie" in config.rpc.headers
    assert config.rpc.proxy_cookies == ("sessionid",)
    assert config.allowed_origins == ("localhost:8000",)
    assert "uvicorn roomsite.asgi:application --port 8000" in run
