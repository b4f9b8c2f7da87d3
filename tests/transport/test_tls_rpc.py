"""RPC over a TLS connection: the application sees what AnyCable-Go sends it over TLS.

AnyCable-Go's ``server/request_info.go`` builds ``env.url`` with ``https://`` when the request
came over TLS; the peer address is the client's, through TLS. A real Cableway server with
``--ssl_cert``/``--ssl_key`` calls a cableway.channels application under uvicorn.
"""

from __future__ import annotations

import trio

from cableway.channels import Application, Connection
from cableway.rpc import derive_rpc_key
from cableway.rpc.settings import RpcSettings
from tests.asgi.host import UvicornHost
from tests.rpc.apphost import Events, Holder

from .test_tls import TlsFiles, recv_json, running, tls_config, tls_files, wss

__all__ = ["tls_files"]  # the fixture, imported for this module's tests

KEY = derive_rpc_key("secret")


async def test_the_application_sees_an_https_url_and_the_client_address(
    tls_files: TlsFiles,
) -> None:
    events = Events()

    class Recorder(Connection):
        def connect(self) -> None:
            self.identified_by(user="u")
            events.append(("connect", self.url, self.remote_addr))

    holder = Holder()
    host = UvicornHost(holder)
    holder.app = Application(connection=Recorder, secret="secret").asgi()
    settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", key=KEY)
    await trio.to_thread.run_sync(host.start)
    try:
        async with running(tls_config(tls_files, rpc=settings)) as server:
            async with wss(server, tls_files, "?room=1") as ws:
                assert (await recv_json(ws))["type"] == "welcome"
            port = server.main_port
            await events.wait_for(
                ("connect", f"https://127.0.0.1:{port}/cable?room=1", "127.0.0.1")
            )
    finally:
        await trio.to_thread.run_sync(host.stop)
