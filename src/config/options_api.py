"""The declarations of the REST API options (AnyCable-Go 1.6's ``api`` package; docs/api.md;
part of :data:`cableway.config.options.OPTIONS`)."""

from __future__ import annotations

from .option import Option, declare

API_SECTION = "REST API (publish and presence query; docs/api.md)"

API: tuple[Option, ...] = (
    declare(
        "api_port",
        "int",
        0,
        "port of the REST API (<api_path>/publish, <api_path>/presence/STREAM/users); 0 = the "
        "main port. The API is served when --secret or --api_secret is set, when this port is "
        "not 0, or in public mode",
        API_SECTION,
        toml=("api", "port"),
        low=0,
        high=65535,
        note="the main port",
    ),
    declare(
        "api_path",
        "str",
        "/api",
        "base path of the REST API endpoints",
        API_SECTION,
        toml=("api", "path"),
    ),
    declare(
        "api_secret",
        "secret",
        None,
        "bearer key of the REST API (Authorization: Bearer KEY); unset = "
        'hex(HMAC-SHA256(--secret, "api-cable")), or no authorization without --secret '
        "(none = unset)",
        API_SECTION,
        toml=("api", "secret"),
        shown="derived from --secret",
    ),
)
