// Drives the REAL @rails/actioncable consumer (the one Rails apps and turbo-rails ship to
// browsers) from Node, over the `ws` package, and reports what it observes as JSON lines.
//
// Usage:  node rails_client.mjs '<scenario JSON>'      (or the scenario on stdin if no argument)
//
// Scenario (all keys but `url` optional):
//   {
//     "url": "ws://127.0.0.1:PORT/cable?jid=...",       // absolute ws:// URL (no `document` needed)
//     "subscriptions": [                                  // created in order, right after start
//       {"name": "turbo", "params": {"channel": "Turbo::StreamsChannel", "signed_stream_name": "..."}}
//     ],
//     "headers": {"Cookie": "sessionid=..."},   // extra handshake headers (what a browser sends
//                                                 // by itself, e.g. the site's cookies)
//     "control": "stdin",     // "stdin": read JSON command lines from stdin (see below);
//                             // "none": never read stdin, so the process exits by itself as soon
//                             //         as the consumer has nothing left to do (no timers, no socket)
//     "timeout_ms": 30000,    // hard watchdog: print {"event":"timeout"} and exit 3
//     "debug": false          // enable the ActionCable logger (goes to stderr)
//   }
//
// Commands on stdin (control "stdin"), one JSON object per line:
//   {"op": "subscribe", "name": "n", "params": {...}} -> consumer.subscriptions.create(params, ...)
//   {"op": "unsubscribe", "name": "turbo"}   -> subscription.unsubscribe()
//   {"op": "perform", "name": "turbo", "action": "speak", "data": {...}}
//   {"op": "disconnect"}                     -> consumer.disconnect(), stop reading stdin
//   (EOF on stdin behaves like "disconnect"). Each command may carry "seq"; once it has been
//   carried out the client prints {"event":"done","op":...,"seq":...}.
//
// Output on stdout, one JSON object per line, in the order observed:
//   {"event":"ready","actioncable":"8.1.400","ws":"8.23.0","node":"v20..."}
//   {"event":"socket_created","socket":1,"url":"ws://...","protocols":[...]}
//   {"event":"socket_open","socket":1,"protocol":"actioncable-v1-json","extensions":""}
//                                         (extensions: the names of the extensions ws negotiated)
//   {"event":"sent","socket":1,"data":{...}}               every frame the consumer sends (parsed)
//   {"event":"frame","socket":1,"raw":"...","data":{...}}  every frame the server sends (raw + parsed)
//   {"event":"socket_close","socket":1,"code":1000,"reason":"...","was_clean":true,
//    "monitor_running":false}
//   {"event":"initialized"|"connected"|"received"|"rejected"|"disconnected","name":"turbo",...}
//        connected: "reconnected"; received: "message"; disconnected: "will_attempt_reconnect"
//   {"event":"idle_exit","sockets":1}   the event loop drained: the consumer scheduled nothing
//                                       more (no reconnect timer, no monitor poll, no open socket)
//   {"event":"done","op":"...","seq":1}  a stdin command has been carried out
//   {"event":"error","message":"..."}   uncaught exception inside the client (exit code 2)

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const require = createRequire(import.meta.url);
const versions = {
  actioncable: require("@rails/actioncable/package.json").version,
  ws: require("ws/package.json").version,
  node: process.version,
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function tryParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

process.on("uncaughtException", (err) => {
  emit({ event: "error", message: String(err && err.stack ? err.stack : err) });
  process.exit(2);
});

const scenarioText = process.argv[2] ?? readFileSync(0, "utf8");
const scenario = JSON.parse(scenarioText);
if (typeof scenario.url !== "string" || !/^wss?:\/\//.test(scenario.url)) {
  throw new Error("scenario.url must be an absolute ws:// or wss:// URL");
}

// --- Test tap around `ws` ---------------------------------------------------------------------
// Not a shim: a transparent subclass of ws's WebSocket that additionally reports every frame in
// both directions and the close code/reason. The consumer still installs its own on* handlers
// (Connection#installEventHandlers) and uses the ws object exactly as a browser WebSocket.
// `for (state in adapters.WebSocket)` (Connection#getState) still finds CONNECTING/OPEN/... because
// for-in walks inherited enumerable static properties of the ws class.
let socketCount = 0;
let consumer = null;

class TappedWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, scenario.headers ? { headers: scenario.headers } : undefined);
    const socket = ++socketCount;
    this._tapId = socket;
    emit({ event: "socket_created", socket, url: String(url), protocols });
    // Registered before the consumer sets `onmessage`, so a frame is reported before the callbacks
    // it triggers.
    this.addEventListener("open", () => {
      emit({ event: "socket_open", socket, protocol: this.protocol, extensions: this.extensions });
    });
    this.addEventListener("message", (ev) => {
      const raw = typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("base64");
      emit({ event: "frame", socket, binary: typeof ev.data !== "string", raw, data: tryParse(raw) });
    });
    this.addEventListener("close", (ev) => {
      // Listeners run in registration order (ours first, the consumer's `onclose` second), so
      // defer to report the monitor state after the consumer has handled the close.
      setImmediate(() => {
        emit({
          event: "socket_close",
          socket,
          code: ev.code,
          reason: ev.reason,
          was_clean: ev.wasClean,
          monitor_running: Boolean(consumer && consumer.connection.monitor.isRunning()),
        });
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

// --- Minimal browser globals the library touches ----------------------------------------------
// 1. WebSocket: the library captures `typeof WebSocket !== "undefined" ? WebSocket : undefined`
//    into `adapters.WebSocket` when the module is evaluated. Node 20 has no global WebSocket, so it
//    must be installed BEFORE the (dynamic) import below. We still verify it was picked up.
globalThis.WebSocket = TappedWebSocket;
// 2. addEventListener/removeEventListener: ConnectionMonitor#start/#stop call the *global*
//    `addEventListener("visibilitychange", …)` (a browser `window` method). Node's globalThis is not
//    an EventTarget and there is no tab visibility, so no-ops are the faithful equivalent of a tab
//    that stays visible.
if (typeof globalThis.addEventListener !== "function") {
  globalThis.addEventListener = () => {};
  globalThis.removeEventListener = () => {};
}
// Not shimmed on purpose: `document` (only used by getConfig()/createWebSocketURL() for relative
// URLs and <meta name="action-cable-url">; we always pass an absolute ws:// URL) and `window`.

const ActionCable = await import("@rails/actioncable");
if (ActionCable.adapters.WebSocket !== TappedWebSocket) {
  throw new Error("@rails/actioncable did not pick up the WebSocket shim");
}
ActionCable.logger.enabled = Boolean(scenario.debug);
ActionCable.adapters.logger = { log: (...args) => console.error(...args) };

emit({ event: "ready", ...versions });

// Watchdog: never hang the test. unref() so it does not keep an otherwise idle process alive
// (the "idle_exit" signal must mean the consumer itself has nothing scheduled).
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

consumer = ActionCable.createConsumer(scenario.url);
const byName = new Map();

function subscribe(name, params) {
  const subscription = consumer.subscriptions.create(params, {
    initialized() {
      emit({ event: "initialized", name, identifier: this.identifier });
    },
    connected({ reconnected } = {}) {
      emit({ event: "connected", name, reconnected: Boolean(reconnected) });
    },
    received(message) {
      emit({ event: "received", name, message });
    },
    rejected() {
      emit({ event: "rejected", name });
    },
    disconnected({ willAttemptReconnect } = {}) {
      emit({ event: "disconnected", name, will_attempt_reconnect: Boolean(willAttemptReconnect) });
    },
  });
  byName.set(name, subscription);
}

for (const [index, spec] of (scenario.subscriptions ?? []).entries()) {
  subscribe(spec.name ?? `sub${index}`, spec.params);
}
// Subscriptions#add already opened the connection; this covers a scenario without subscriptions.
consumer.ensureActiveConnection();

if ((scenario.control ?? "stdin") === "stdin") {
  let buffer = "";
  const stop = () => {
    process.stdin.off("data", onData);
    process.stdin.off("end", stop);
    process.stdin.pause();
    process.stdin.unref?.();
    consumer.disconnect();
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
      } else if (cmd.op === "subscribe") {
        subscribe(cmd.name, cmd.params);
      } else if (cmd.op === "unsubscribe") {
        byName.get(cmd.name).unsubscribe();
      } else if (cmd.op === "perform") {
        byName.get(cmd.name).perform(cmd.action, cmd.data ?? {});
      } else {
        throw new Error(`unknown op ${JSON.stringify(cmd)}`);
      }
      // Commands run synchronously: once "done" is printed, the consumer has acted on it (e.g. a
      // removed subscription gets no further `received` callbacks).
      emit({ event: "done", op: cmd.op, seq: cmd.seq ?? null });
    }
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", onData);
  process.stdin.on("end", stop);
}
