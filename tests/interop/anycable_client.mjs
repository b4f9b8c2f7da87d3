// Drives the REAL @anycable/web client (createCable from @anycable/web, on @anycable/core) from
// Node, over the `ws` package, with the extended protocol `actioncable-v1-ext-json` (or the plain
// `actioncable-v1-json`: scenario "protocol"), and reports what it observes as JSON lines. Used by
// test_anycable_reliable.py and test_anycable_plain_protocol.py.
//
// Usage:  node anycable_client.mjs '<scenario JSON>'      (or the scenario on stdin if no argument)
//
// Scenario (all keys but `url` optional):
//   {
//     "url": "ws://127.0.0.1:PORT/cable",          // absolute ws:// URL
//     "protocol": "actioncable-v1-ext-json",       // createCable's `protocol` option (default;
//                                                  //   "actioncable-v1-json" = plain protocol)
//     "token": "<JWT>",                            // createCable's `auth: {token}` (adds ?jid=)
//     "streams": [                                 // subscribed in order, right after start:
//       {"name": "chat", "stream": "chat"},        //   cable.streamFrom("chat")
//       {"name": "s", "signed": "<signed name>"},  //   cable.streamFromSigned("<signed name>")
//       {"name": "room", "channel": "room", "params": {"room": "42"}}
//                                                  //   cable.subscribeTo("room", {room: "42"})
//     ],
//     "reconnect": {"interval_ms": 250, "max_ms": 1000},
//                              // reconnectStrategy = backoffWithJitter(interval_ms, {maxInterval})
//                              // (the library's own backoff, with small numbers); absent = default
//     "timeout_ms": 30000,     // hard watchdog: print {"event":"timeout"} and exit 3
//     "debug": false           // client logger at "debug" instead of "warn" (stderr)
//   }
//
// Commands on stdin, one JSON object per line (each may carry "seq"; once carried out the client
// prints {"event":"done","op":...,"seq":...}):
//   {"op": "kill_socket"}   destroy the current socket's TCP connection (ws._socket.destroy()):
//                           no close frame is sent, so the library sees an abnormal close (1006)
//                           exactly like after a network failure, and reconnects by its backoff
//   {"op": "disconnect"}    cable.disconnect() (a deliberate close), stop reading stdin; the
//                           process exits once that socket is closed ("exit"; at most 2 s later)
//   {"op": "perform", "name": "room", "action": "away", "data": {...}}  channel.perform(...)
//   {"op": "whisper", "name": "room", "data": {...}}     channel.whisper(data)
//   {"op": "join", "name": "room", "id": "alice", "info": {...}}  channel.presence.join(id, info)
//   {"op": "leave", "name": "room"}                      channel.presence.leave()
//   {"op": "presence_info", "name": "room"}              await channel.presence.info(), printed
//                           as {"event":"presence_info","name":...,"state":{id: info}} ("done"
//                           follows once it resolved)
//   (EOF on stdin behaves like "disconnect").
//
// Output on stdout, one JSON object per line, in the order observed, each with "t" (ms since start):
//   {"event":"ready","anycable_web":"1.1.1","anycable_core":"1.1.7","ws":"8.23.0","node":"v20..."}
//   {"event":"socket_created","socket":1,"url":"ws://...?sid=...","protocols":"actioncable-v1-ext-json"}
//   {"event":"socket_open","socket":1,"protocol":"actioncable-v1-ext-json"}
//   {"event":"sent","socket":1,"data":{...}}               every frame the client sends (parsed)
//   {"event":"frame","socket":1,"raw":"...","data":{...}}  every frame the server sends
//   {"event":"socket_close","socket":1,"code":1006,"reason":"","was_clean":false}
//   {"event":"socket_error","socket":1,"message":"..."}
//   {"event":"cable_connect","reconnect":false,"restored":false,"session_id":"..."}
//   {"event":"cable_disconnect","reason":"..."} / {"event":"cable_close","reason":...}
//   {"event":"cable_info","type":"...","data":...}
//   {"event":"channel_connect","name":"chat","reconnect":true,"restored":true}
//   {"event":"channel_disconnect","name":"chat","reason":"..."} / {"event":"channel_close",...}
//   {"event":"message","name":"chat","message":<what the app's `message` callback got>,"meta":{...}}
//   {"event":"info","name":"chat","type":"history_received","data":...}
//   {"event":"presence","name":"room","type":"join","id":"bob","info":{...}}  (channel "presence")
//   {"event":"exit","how":"socket_closed","sockets":2}   after "disconnect"
//   {"event":"idle_exit","sockets":2}   the event loop drained (no timer, no socket left)
//   {"event":"error","message":"..."}   uncaught exception inside the client (exit code 2)

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const require = createRequire(import.meta.url);
const versions = {
  anycable_web: require("@anycable/web/package.json").version,
  anycable_core: require("@anycable/core/package.json").version,
  ws: require("ws/package.json").version,
  node: process.version,
};

// Every line carries "t": milliseconds since the client started (for timings in failure reports).
const startedAt = performance.now();
function emit(obj) {
  const t = Math.round(performance.now() - startedAt);
  process.stdout.write(JSON.stringify({ ...obj, t }) + "\n");
}

function tryParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function reasonOf(err) {
  if (err === undefined || err === null) return null;
  return String(err.reason ?? err.message ?? err);
}

process.on("uncaughtException", (err) => {
  emit({ event: "error", message: String(err && err.stack ? err.stack : err) });
  process.exit(2);
});
process.on("unhandledRejection", (err) => {
  emit({ event: "error", message: String(err && err.stack ? err.stack : err) });
  process.exit(2);
});

const scenarioText = process.argv[2] ?? readFileSync(0, "utf8");
const scenario = JSON.parse(scenarioText);
if (typeof scenario.url !== "string" || !/^wss?:\/\//.test(scenario.url)) {
  throw new Error("scenario.url must be an absolute ws:// or wss:// URL");
}

// --- Test tap around `ws` ---------------------------------------------------------------------
// Not a shim: a transparent subclass of ws's WebSocket, handed to the library through its own
// `websocketImplementation` option (the documented way to use it in Node). It reports frames in
// both directions and the close code, and remembers the live socket so that "kill_socket" can cut
// its TCP connection. The library installs its own on* handlers (WebSocketTransport#initListeners)
// and uses the object exactly as a browser WebSocket.
let socketCount = 0;
let currentSocket = null;

class TappedWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    const socket = ++socketCount;
    this._tapId = socket;
    currentSocket = this;
    emit({ event: "socket_created", socket, url: String(url), protocols });
    // Registered before the library sets `onmessage`, so a frame is reported before the callbacks
    // it triggers.
    this.addEventListener("open", () => {
      emit({ event: "socket_open", socket, protocol: this.protocol });
    });
    this.addEventListener("message", (ev) => {
      const raw = typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("base64");
      emit({ event: "frame", socket, binary: typeof ev.data !== "string", raw, data: tryParse(raw) });
    });
    this.addEventListener("close", (ev) => {
      emit({
        event: "socket_close",
        socket,
        code: ev.code,
        reason: ev.reason,
        was_clean: ev.wasClean,
      });
    });
    this.addEventListener("error", (ev) => {
      emit({ event: "socket_error", socket, message: String(ev.message ?? ev.error ?? "error") });
    });
  }

  send(data, ...rest) {
    emit({ event: "sent", socket: this._tapId, data: tryParse(String(data)) });
    return super.send(data, ...rest);
  }
}

const { createCable } = await import("@anycable/web");
const { BaseLogger, backoffWithJitter } = await import("@anycable/core");

// The web Logger writes info/debug with console.info/console.debug, i.e. to stdout, which is
// reserved for the JSON event lines; this one writes every level to stderr.
class StderrLogger extends BaseLogger {
  writeLogEntry(level, msg, details) {
    process.stderr.write(
      `[anycable ${level}] ${msg}${details === undefined ? "" : " " + safeJson(details)}\n`,
    );
  }
}

function safeJson(value) {
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? String(v) : v));
  } catch {
    return String(value);
  }
}

emit({ event: "ready", ...versions });

const timeoutMs = scenario.timeout_ms ?? 30000;
const watchdog = setTimeout(() => {
  emit({ event: "timeout", after_ms: timeoutMs });
  process.exit(3);
}, timeoutMs);
watchdog.unref();

process.on("beforeExit", () => {
  emit({ event: "idle_exit", sockets: socketCount });
  process.exit(0);
});

const options = {
  protocol: scenario.protocol ?? "actioncable-v1-ext-json",
  websocketImplementation: TappedWebSocket,
  logger: new StderrLogger(scenario.debug ? "debug" : "warn"),
};
if (scenario.token) options.auth = { token: scenario.token };
if (scenario.reconnect) {
  options.reconnectStrategy = backoffWithJitter(scenario.reconnect.interval_ms, {
    maxInterval: scenario.reconnect.max_ms,
  });
}
const cable = createCable(scenario.url, options);

cable.on("connect", (ev) => {
  emit({
    event: "cable_connect",
    reconnect: Boolean(ev && ev.reconnect),
    restored: Boolean(ev && ev.restored),
    session_id: cable.sessionId ?? null,
  });
});
cable.on("disconnect", (err) => emit({ event: "cable_disconnect", reason: reasonOf(err) }));
cable.on("close", (err) => emit({ event: "cable_close", reason: reasonOf(err) }));
cable.on("info", (ev) => emit({ event: "cable_info", type: ev.type, data: ev.data ?? null }));

const channels = new Map();
for (const [index, spec] of (scenario.streams ?? []).entries()) {
  const name = spec.name ?? `stream${index}`;
  const channel =
    spec.channel !== undefined
      ? cable.subscribeTo(spec.channel, spec.params ?? {})
      : spec.signed !== undefined
        ? cable.streamFromSigned(spec.signed)
        : cable.streamFrom(spec.stream);
  channels.set(name, channel);
  emit({ event: "channel_created", name, identifier: channel.identifier });
  channel.on("connect", (ev) =>
    emit({
      event: "channel_connect",
      name,
      reconnect: Boolean(ev && ev.reconnect),
      restored: Boolean(ev && ev.restored),
    }),
  );
  channel.on("disconnect", (err) =>
    emit({ event: "channel_disconnect", name, reason: reasonOf(err) }),
  );
  channel.on("close", (err) => emit({ event: "channel_close", name, reason: reasonOf(err) }));
  // What application code sees: the `message` callback (no deduplication happens in between).
  channel.on("message", (message, meta) =>
    emit({ event: "message", name, message, meta: meta ?? null }),
  );
  channel.on("info", (ev) =>
    emit({ event: "info", name, type: ev.type, data: ev.data ?? null }),
  );
  channel.on("presence", (ev) =>
    emit({ event: "presence", name, type: ev.type, id: ev.id ?? null, info: ev.info ?? null }),
  );
}

let buffer = "";
const stop = () => {
  process.stdin.off("data", onData);
  process.stdin.off("end", stop);
  process.stdin.pause();
  process.stdin.unref?.();
  const ws = currentSocket;
  cable.disconnect();
  // The library keeps a 5 s subscribe-retry timer alive (ActionCableProtocol#maybeRetrySubscribe)
  // even after it got the confirmation, so waiting for the event loop to drain would cost 5 s.
  // Exit once the socket has finished its close handshake instead (bounded: 2 s).
  const exit = (how) => {
    emit({ event: "exit", how, sockets: socketCount });
    process.exit(0);
  };
  if (!ws || ws.readyState === WebSocket.CLOSED) {
    setImmediate(() => exit("no_socket"));
  } else {
    ws.addEventListener("close", () => setImmediate(() => exit("socket_closed")));
    setTimeout(() => exit("close_timeout"), 2000).unref();
  }
};
const onData = (chunk) => {
  buffer += chunk;
  let nl;
  while ((nl = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, nl).trim();
    buffer = buffer.slice(nl + 1);
    if (!line) continue;
    const cmd = JSON.parse(line);
    if (cmd.op === "disconnect") {
      stop();
      emit({ event: "done", op: cmd.op, seq: cmd.seq ?? null });
      return;
    } else if (cmd.op === "kill_socket") {
      const ws = currentSocket;
      if (!ws || !ws._socket) throw new Error("kill_socket: no live TCP socket");
      emit({ event: "killing_socket", socket: ws._tapId });
      // ws keeps the net.Socket in `_socket`; destroying it drops the TCP connection without a
      // WebSocket close frame (like a network failure). ws then reports close code 1006.
      ws._socket.destroy();
    } else if (["perform", "whisper", "join", "leave", "presence_info"].includes(cmd.op)) {
      const channel = channels.get(cmd.name);
      if (!channel) throw new Error(`${cmd.op}: no channel ${cmd.name}`);
      const run = {
        perform: () => channel.perform(cmd.action, cmd.data),
        whisper: () => channel.whisper(cmd.data),
        join: () => channel.presence.join(cmd.id, cmd.info),
        leave: () => channel.presence.leave(),
        presence_info: async () =>
          emit({ event: "presence_info", name: cmd.name, state: await channel.presence.info() }),
      }[cmd.op];
      run().then(() => emit({ event: "done", op: cmd.op, seq: cmd.seq ?? null }));
      continue;
    } else {
      throw new Error(`unknown op ${JSON.stringify(cmd)}`);
    }
    emit({ event: "done", op: cmd.op, seq: cmd.seq ?? null });
  }
};
process.stdin.setEncoding("utf8");
process.stdin.on("data", onData);
process.stdin.on("end", stop);
