"""Cableway settings from Django's ``settings.CABLEWAY`` (else ``ANYCABLE_*`` variables)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.db import models
from django.utils.module_loading import import_string

from ..toolkit.integration import IntegrationSettings, stream_name
from ..toolkit.streams import gid_param

__all__ = ["get_identifiers", "get_settings", "model_stream_param", "stream_name"]

#: Keys of ``settings.CABLEWAY`` that only the Django integration reads.
DJANGO_ONLY = ("identifiers",)


def _mapping() -> dict[str, object]:
    value = getattr(django_settings, "CABLEWAY", None) or {}
    if not isinstance(value, Mapping):
        raise TypeError("settings.CABLEWAY must be a dict")
    return {str(key).lower(): item for key, item in value.items()}


@functools.cache
def get_settings() -> IntegrationSettings:
    """The :class:`~cableway.integration.IntegrationSettings` from ``settings.CABLEWAY``
    (keys: ``secret``, ``jwt_secret``, ``turbo_streams_secret``, ``broadcast_key``,
    ``websocket_url``, ``http_broadcast_url``, ``sse_path``, ``jwt_param``, ``jwt_ttl``,
    ``raise_broadcast_errors``; any case), each missing one from ``ANYCABLE_<NAME>``.
    Re-read when a test overrides ``CABLEWAY``."""
    values = {k: v for k, v in _mapping().items() if k not in DJANGO_ONLY}
    return IntegrationSettings.from_mapping(values)


def _default_identifiers(request: Any) -> Mapping[str, object]:
    user = getattr(request, "user", None)
    return {"user_id": getattr(user, "pk", None)}


@functools.cache
def _identifiers_function() -> Callable[[Any], Mapping[str, object]]:
    path = _mapping().get("identifiers")
    if path is None:
        return _default_identifiers
    if callable(path):
        return path
    function: Callable[[Any], Mapping[str, object]] = import_string(str(path))
    return function


def get_identifiers(request: Any) -> Mapping[str, object]:
    """The identifiers put in the token for ``request``: ``CABLEWAY["identifiers"]`` (a
    callable, or its dotted path, taking the request), else ``{"user_id": request.user.pk}``
    (``None`` for an anonymous visitor)."""
    return _identifiers_function()(request)


def model_stream_param(obj: object) -> str | None:
    """How a model instance is named in a stream (unless it defines ``to_gid_param()`` or
    ``to_param()``): ``gid_param(app_label, ModelName, pk)``, the Base64 of
    ``gid://<app_label>/<ModelName>/<pk>``, as Rails names records."""
    if not isinstance(obj, models.Model):
        return None
    if obj.pk is None:
        raise ValueError(f"cannot name a stream after an unsaved {type(obj).__name__}")
    meta = obj._meta
    return gid_param(meta.app_label, meta.object_name or type(obj).__name__, obj.pk)


def _reset(*, setting: str, **_: object) -> None:
    if setting == "CABLEWAY":
        get_settings.cache_clear()
        _identifiers_function.cache_clear()


setting_changed.connect(_reset, dispatch_uid="cableway.django.conf.reset")
