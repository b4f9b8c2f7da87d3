"""AnyCable's RPC (Connect, Command, Disconnect) as data: the messages, their JSON, the
HTTP headers and the shared key (spec: rpc.md). Sans-IO: no sockets, no clocks, no event
loop, so the server's RPC client and the application SDK (:mod:`cableway.channels`) share
one definition of the wire.
"""

from __future__ import annotations

from .http import (
    CALLS,
    META_PROTOV_HEADER,
    META_SID_HEADER,
    PROTOCOL_VERSION,
    RPC_PURPOSE,
    authorized,
    derive_rpc_key,
    endpoint_url,
    header,
    request_headers,
    rpc_key,
)
from .messages import (
    PRESENCE_STATE,
    WHISPER_STATE,
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DecodeError,
    DisconnectRequest,
    DisconnectResponse,
    Env,
    EnvResponse,
    PresenceResponse,
    Status,
    decode_disconnect_istate,
    encode_disconnect_istate,
    merge_state,
    state_changes,
)

__all__ = [
    "CALLS",
    "META_PROTOV_HEADER",
    "META_SID_HEADER",
    "PRESENCE_STATE",
    "PROTOCOL_VERSION",
    "RPC_PURPOSE",
    "WHISPER_STATE",
    "CommandMessage",
    "CommandResponse",
    "ConnectionRequest",
    "ConnectionResponse",
    "DecodeError",
    "DisconnectRequest",
    "DisconnectResponse",
    "Env",
    "EnvResponse",
    "PresenceResponse",
    "Status",
    "authorized",
    "decode_disconnect_istate",
    "derive_rpc_key",
    "encode_disconnect_istate",
    "endpoint_url",
    "header",
    "merge_state",
    "request_headers",
    "rpc_key",
    "state_changes",
]
