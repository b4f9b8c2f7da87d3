// Drives a REAL EventSource (the `eventsource` npm package, a WHATWG-spec EventSource for Node built
// on fetch) against a Cableway server's SSE endpoint and reports what it observes as JSON lines.
// Used by test_sse_eventsource.py.
//
// Usage:  node sse_client.mjs '<scenario JSON>'      (or the scenario on stdin if no argument)
//
// Scenario (all keys but `url` optional):
//   {
//     "url": "http://127.0.0.1:PORT/events?stream=chat",
//     "events": ["welcome", "confirm_subscription", ...],  // typed SSE events to listen for with
//                                                           // addEventListener (reported as "typed")
//     "control": "stdin",     // "stdin": read JSON command lines from stdin (see below);
//                             // "none": never read stdin, so the process exits by itself as soon
//                             //         as the EventSource has nothing left to do
//     "timeout_ms": 30000     // hard watchdog: print {"event":"timeout"} and exit 3
//   }
//
// Commands on stdin (control "stdin"), one JSON object per line (each may carry "seq"; once carried
// out the client prints {"event":"done","op":...,"seq":...,"ready_state":N}):
//   {"op": "state"}   only reports readyState in "done"
//   {"op": "close"}   es.close(), stop reading stdin (the process then exits once idle)
//   (EOF on stdin behaves like "close").
//
// Output on stdout, one JSON object per line, in the order observed, each with "t" (ms since start):
//   {"event":"ready","eventsource":"3.0.7","node":"v20..."}
//   {"event":"request","request":1,"url":"...","last_event_id":null|"3/abcd/chat"}
//                                 every HTTP request the EventSource makes (through the `fetch`
//                                 option: a transparent wrapper around Node's global fetch)
//   {"event":"response","request":1,"status":200,"content_type":"text/event-stream; ..."}
//   {"event":"request_failed","request":1,"message":"..."}
//   {"event":"open","ready_state":1}
//   {"event":"message","data":"...","last_event_id":"3/abcd/chat"}   onmessage (what app code sees)
//   {"event":"typed","type":"welcome","data":"...","last_event_id":""}
//   {"event":"error","code":401|null,"message":"...","ready_state":0|2}   onerror
//   {"event":"idle_exit","requests":N,"ready_state":2}  the event loop drained (no timer/socket left)
//   {"event":"error_uncaught","message":"..."}   uncaught exception inside the client (exit code 2)

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { EventSource } from "eventsource";

const require = createRequire(import.meta.url);
const versions = {
  eventsource: require("eventsource/package.json").version,
  node: process.version,
};

// Every line carries "t": milliseconds since the client started (for timings in failure reports).
const startedAt = performance.now();
function emit(obj) {
  const t = Math.round(performance.now() - startedAt);
  process.stdout.write(JSON.stringify({ ...obj, t }) + "\n");
}

process.on("uncaughtException", (err) => {
  emit({ event: "error_uncaught", message: String(err && err.stack ? err.stack : err) });
  process.exit(2);
});

const scenarioText = process.argv[2] ?? readFileSync(0, "utf8");
const scenario = JSON.parse(scenarioText);
if (typeof scenario.url !== "string" || !/^https?:\/\//.test(scenario.url)) {
  throw new Error("scenario.url must be an absolute http:// or https:// URL");
}

emit({ event: "ready", ...versions });

const timeoutMs = scenario.timeout_ms ?? 30000;
const watchdog = setTimeout(() => {
  emit({ event: "timeout", after_ms: timeoutMs });
  process.exit(3);
}, timeoutMs);
watchdog.unref();

let requests = 0;
let es = null;

process.on("beforeExit", () => {
  emit({ event: "idle_exit", requests, ready_state: es ? es.readyState : null });
  process.exit(0);
});

// The library's documented `fetch` option; this wrapper only reports the request (notably the
// Last-Event-ID header the EventSource adds on reconnect) and the response status.
async function tappedFetch(url, init) {
  const request = ++requests;
  const headers = new Headers(init && init.headers);
  emit({ event: "request", request, url: String(url), last_event_id: headers.get("last-event-id") });
  try {
    const response = await fetch(url, init);
    emit({
      event: "response",
      request,
      status: response.status,
      content_type: response.headers.get("content-type"),
    });
    return response;
  } catch (err) {
    emit({ event: "request_failed", request, message: String(err && err.cause ? err.cause : err) });
    throw err;
  }
}

es = new EventSource(scenario.url, { fetch: tappedFetch });
es.onopen = () => emit({ event: "open", ready_state: es.readyState });
es.onmessage = (ev) => emit({ event: "message", data: ev.data, last_event_id: ev.lastEventId });
es.onerror = (ev) =>
  emit({
    event: "error",
    code: ev.code ?? null,
    message: ev.message ?? null,
    ready_state: es.readyState,
  });
for (const type of scenario.events ?? []) {
  es.addEventListener(type, (ev) =>
    emit({ event: "typed", type, data: ev.data, last_event_id: ev.lastEventId }),
  );
}

if ((scenario.control ?? "stdin") === "stdin") {
  let buffer = "";
  const stop = () => {
    process.stdin.off("data", onData);
    process.stdin.off("end", stop);
    process.stdin.pause();
    process.stdin.unref?.();
    es.close();
  };
  const onData = (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      const cmd = JSON.parse(line);
      if (cmd.op === "close") {
        stop();
      } else if (cmd.op !== "state") {
        throw new Error(`unknown op ${JSON.stringify(cmd)}`);
      }
      emit({ event: "done", op: cmd.op, seq: cmd.seq ?? null, ready_state: es.readyState });
      if (cmd.op === "close") return;
    }
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", onData);
  process.stdin.on("end", stop);
}
