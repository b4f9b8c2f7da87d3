"""Stream names for Turbo Streams and ``$pubsub``, built and signed the way turbo-rails does.

Rails renders ``turbo_stream_from @room, :messages`` as a ``<turbo-cable-stream-source>``
whose ``signed-stream-name`` is built from the parts (spec §8.2, §8.3)::

    >>> from cableway.streams import gid_param, signed_stream_name, stream_name_from
    >>> class Room:
    ...     def __init__(self, id: int) -> None:
    ...         self.id = id
    ...     def to_gid_param(self) -> str:
    ...         return gid_param("myapp", "Room", self.id)
    >>> stream_name_from(Room(1), "messages")
    'Z2lkOi8vbXlhcHAvUm9vbS8x:messages'
    >>> signed_stream_name("chat/2023", secret="s3Krit")
    'ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c'

The page subscribes with the *signed* name; the application broadcasts to the *unsigned*
one (``stream_name_from(...)``).
"""

from __future__ import annotations

import base64
import math
import uuid
from urllib.parse import quote_plus

from ..auth.errors import InvalidSignature
from ..auth.signed_streams import sign_stream_name, verify_signed_stream_name

__all__ = [
    "InvalidSignature",
    "gid_param",
    "sign_stream_name",
    "signed_stream_name",
    "stream_name_from",
    "verify_signed_stream_name",
]


def gid_param(app: str, model: str, id: object) -> str:
    """Rails' ``to_gid_param``: URL-safe Base64, unpadded, of ``gid://<app>/<model>/<id>``.

    ``id`` is stringified and escaped like Ruby's ``CGI.escape`` (as GlobalID does); a tuple
    or list is a composite primary key, its parts escaped one by one and joined with ``/``.
    ``gid_param("myapp", "Room", 1) == "Z2lkOi8vbXlhcHAvUm9vbS8x"``.
    """
    if not app or not model:
        raise ValueError("gid_param needs a non-empty app and model name")
    parts = list(id) if isinstance(id, tuple | list) else [id]
    if not parts:
        raise ValueError("gid_param needs a model id")
    model_id = "/".join(quote_plus(_param(part), safe="") for part in parts)
    if not model_id:
        raise ValueError("gid_param needs a non-empty model id")
    uri = f"gid://{app}/{model}/{model_id}"
    return base64.urlsafe_b64encode(uri.encode("utf-8")).rstrip(b"=").decode("ascii")


def _hook(obj: object, name: str) -> str | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    if callable(value):
        value = value()
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{type(obj).__name__}.{name}() returned {type(value).__name__}, not str")
    return value


def _param(obj: object) -> str:
    """One streamable, as Rails' ``try(:to_gid_param) || to_param``."""
    for hook in ("to_gid_param", "to_param"):
        value = _hook(obj, hook)
        if value is not None:
            return value
    if isinstance(obj, str):
        return obj
    if isinstance(obj, bool):  # before int: Ruby writes true/false
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot build a stream name from {obj!r}")
        return str(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(
        f"cannot build a stream name from {type(obj).__name__}: pass a str, an int, or an "
        "object with a to_gid_param() or to_param() method"
    )


def _name(streamable: object) -> str:
    if isinstance(streamable, list | tuple):
        return ":".join(_name(item) for item in streamable)
    return _param(streamable)


def stream_name_from(*streamables: object) -> str:
    """The stream name turbo-rails builds from ``streamables`` (spec §8.3).

    Each part becomes ``part.to_gid_param()`` if it has one (and it returns a string),
    else ``part.to_param()``, else the part itself for ``str``, ``int``, ``float`` and
    ``uuid.UUID`` (``True``/``False`` become ``"true"``/``"false"`` as in Ruby). Lists and
    tuples, nested or not, are flattened; all parts are joined with ``":"``.

    Ruby symbols (``:messages``) are plain strings here (``"messages"``). ``None`` and other
    types raise :class:`TypeError` rather than producing a surprising name; ``NaN`` and
    infinities raise :class:`ValueError`. Floats use Python's ``str()``, which matches
    Ruby's ``to_s`` for ordinary values (``1.5``) but not in exponent notation.
    """
    if not streamables:
        raise ValueError("stream_name_from needs at least one part")
    name = _name(list(streamables))
    if not name:
        raise ValueError("the stream name is empty")
    return name


def signed_stream_name(*streamables: object, secret: str) -> str:
    """``sign_stream_name(stream_name_from(*streamables), secret)``: the value of
    ``signed-stream-name`` / ``?turbo_signed_stream_name=`` for the page.

    ``secret`` is the server's Turbo Streams secret (``--turbo_streams_secret``, else
    ``--streams_secret``, else ``--secret``). Raises :class:`ValueError` for an empty secret,
    which the server never accepts.
    """
    if not secret:
        raise ValueError("refusing to sign with an empty secret")
    return sign_stream_name(stream_name_from(*streamables), secret)
