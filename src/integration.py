"""The documented path of :mod:`cableway.toolkit.integration` (re-exported; no code here)."""

from __future__ import annotations

from .toolkit.integration import (
    TURBO_STREAM_MEDIA_TYPE,
    TURBO_STREAMS_CHANNEL,
    BroadcastInterceptor,
    IntegrationSettings,
    Publisher,
    accepts_turbo_stream,
    active_interceptor,
    cable_meta_tag,
    cable_url,
    current_settings,
    intercept_broadcasts,
    register_streamable,
    set_settings_provider,
    stream_name,
    token_for,
    turbo_stream_source,
)

__all__ = [
    "TURBO_STREAMS_CHANNEL",
    "TURBO_STREAM_MEDIA_TYPE",
    "BroadcastInterceptor",
    "IntegrationSettings",
    "Publisher",
    "accepts_turbo_stream",
    "active_interceptor",
    "cable_meta_tag",
    "cable_url",
    "current_settings",
    "intercept_broadcasts",
    "register_streamable",
    "set_settings_provider",
    "stream_name",
    "token_for",
    "turbo_stream_source",
]
