"""Cableway as an ASGI 3 application: the sans-IO core driven by asyncio.

:class:`CablewayApp` serves, from one :class:`~cableway.config.Config`, what the trio server
serves on its main port: the Action Cable WebSocket path(s), Server-Sent Events at
``config.sse_path``, ``POST`` broadcasts at ``config.http_broadcast_path`` and
``config.health_path``. Every protocol decision is taken by :mod:`cableway.protocol` and
:mod:`cableway.auth`, exactly as in the trio driver (:mod:`cableway.transport`); this
package only carries the core's and the node's decisions out on asyncio
(:mod:`.app`: routes and handshakes; :mod:`.session`: sessions and the fan-out;
:mod:`.http`: ASGI plumbing). No trio is imported on this path.

Theory of operation
-------------------

* One :class:`.session.Session` per client: a core
  (:class:`~cableway.protocol.connection.CableConnection`), a byte-bounded
  :class:`.session.Outbox` and two tasks: the *reader* (``receive()`` -> core) and the
  *writer* (outbox -> ``send()``, each send under ``ws_write_timeout``). The core's
  ``next_deadline()`` is kept armed as one ``loop.call_at`` timer per session (pings, pong
  deadline, held-message release). The core's clock is ``loop.time()``.
* The rules of the node are the trio server's, from :mod:`cableway.node`: the registry,
  publishing (runs of publications on one stream, encoded once per identifier, one
  fan-out call per identifier: :func:`cableway.node.fanout.fan_out`, wire items built once
  per kind of session), the chain from core events to actions
  (:func:`cableway.node.dispatch.dispatch`; the session is the
  :class:`~cableway.node.dispatch.EventSink`), opening sessions (SSE screening, restore,
  Connect or token), delegated commands, broadcast intake, the sweep and the metrics.
  Fan-out never awaits; an outbox over ``ws_max_pending_size`` (:mod:`cableway.node.bound`)
  disconnects its client as ``too_slow``, and each awaited ``send()`` that does not return
  within ``ws_write_timeout`` ends the session (see docs/asgi.md for what each ASGI server
  does with its own buffer).
* History, restore and presence come from the app's own
  :class:`~cableway.protocol.broker.MemoryBroker` (``config.broker == "memory"``) behind
  the node's :class:`~cableway.node.backend.Backend`, swept once a second by a task
  started with the first request (or by the ASGI lifespan).
* ``max_conn`` bounds the live sessions (WebSocket and SSE): the excess waits before its
  handshake is answered, as connections wait in the trio server's backlog.

Routes are matched on the path *below* the mount point (``scope["path"]`` minus
``scope["root_path"]``), so ``app.mount("/anycable", CablewayApp(config))`` in Starlette or
FastAPI serves ``/anycable/cable``, ``/anycable/events`` and so on. A trailing slash is
ignored and an empty route path counts as ``/``. See ``docs/asgi.md``.

Differences from the trio server, all due to ASGI: the ASGI server does the HTTP and
WebSocket framing (so "encode once" shares the message text, not the frame bytes), a
refused WebSocket (bad origin, unknown path) is answered ``403`` by the ASGI server, there
are no native WebSocket pings (``enable_native_pings`` is ignored), the broadcast path is
served on the same port as everything else (``http_broadcast_port`` is ignored), and so
are the metrics at ``metrics_http`` (``metrics_port`` is ignored).
"""

from __future__ import annotations

from .app import CablewayApp

__all__ = ["CablewayApp"]
