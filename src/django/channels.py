"""Who a :mod:`cableway.channels` connection is, from Django's session cookie.

The server forwards the handshake's ``cookie`` header to the application's Connect call
(``--headers``, ``cookie`` by default), so a :class:`~cableway.channels.Connection` can
find the Django session the browser logged in with and the user it belongs to, as
``SessionMiddleware`` and ``AuthenticationMiddleware`` do for a page::

    from cableway.channels import Connection
    from cableway.django.channels import session_user

    class ChatConnection(Connection):
        def connect(self):
            user = session_user(self)
            if not user.is_authenticated:
                self.reject()
            self.identified_by(user_id=user.pk)

These functions use the ORM (the session store and the user model): call them from plain
``def`` callbacks, which the channels ASGI app runs in a worker thread.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase

    from ..channels import Connection

__all__ = ["session", "session_user"]


def session(connection: Connection) -> SessionBase:
    """The Django session named by the connection's session cookie
    (``settings.SESSION_COOKIE_NAME``), from ``settings.SESSION_ENGINE``; an empty
    session without the cookie or for an unknown or expired key."""
    engine = import_module(settings.SESSION_ENGINE)
    key = connection.cookies.get(settings.SESSION_COOKIE_NAME) or None
    store: SessionBase = engine.SessionStore(key)
    return store


class _ReadOnlySession:
    """What ``django.contrib.auth.get_user`` reads of a session, with its writes dropped:
    a WebSocket handshake has no response to carry a new session cookie, so rotating or
    flushing the session here would log the browser out of the site."""

    def __init__(self, store: SessionBase) -> None:
        self._store = store

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        pass

    def cycle_key(self) -> None:
        pass

    def flush(self) -> None:
        pass


class _SessionRequest:
    """The part of an ``HttpRequest`` that ``get_user`` uses."""

    def __init__(self, store: SessionBase) -> None:
        self.session = _ReadOnlySession(store)


def session_user(connection: Connection) -> AbstractBaseUser | AnonymousUser:
    """The user logged in to the connection's Django session, as ``request.user`` would
    be on a page (``django.contrib.auth.get_user``: the session's backend and the
    password-change hash are checked), else an ``AnonymousUser``. Never changes the
    session."""
    from django.contrib.auth import get_user

    user: AbstractBaseUser | AnonymousUser = get_user(_SessionRequest(session(connection)))
    return user
