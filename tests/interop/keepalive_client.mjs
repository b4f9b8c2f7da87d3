// Node's own HTTP client with a keep-alive agent (the default since Node 19, and what most
// Node backends and proxies use): for each case, a request the server refuses, then
// GET /health through the same agent. Used by test_http_keepalive_node.py.
//
// Usage:  node keepalive_client.mjs '<scenario JSON>'
//
// Scenario: {"base": "http://127.0.0.1:PORT", "timeout_ms": 20000,
//            "cases": [{"name": "...", "method": "GET", "path": "/events",
//                       "headers": {...}, "body": "..." (optional), "repeat": 1000 (optional:
//                       the body repeated)}]}
//
// Output on stdout, one JSON object per case, in order:
//   {"name": "...", "status": 400, "reason": "Bad Request", "connection": "close" | null,
//    "health": 200, "health_reused_socket": true, "error": null | "ECONNRESET: socket hang up"}
// then {"event": "done"}.

import http from "node:http";

const scenario = JSON.parse(process.argv[2]);
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ event: "timeout" }));
  process.exit(3);
}, scenario.timeout_ms ?? 20000);

function request(agent, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${scenario.base}${path}`,
      { method, headers, agent },
      (res) => {
        res.resume(); // read and drop the body
        res.on("end", () =>
          resolve({
            status: res.statusCode,
            reason: res.statusMessage,
            connection: res.headers.connection ?? null,
            reused: req.reusedSocket,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

for (const c of scenario.cases) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = c.body === undefined ? undefined : c.body.repeat(c.repeat ?? 1);
  const out = { name: c.name, error: null };
  try {
    const refused = await request(agent, c.method, c.path, c.headers ?? {}, body);
    Object.assign(out, {
      status: refused.status,
      reason: refused.reason,
      connection: refused.connection,
    });
    const health = await request(agent, "GET", "/health", {}, undefined);
    out.health = health.status;
    out.health_reused_socket = health.reused;
  } catch (err) {
    out.error = `${err.code ?? ""}: ${err.message}`;
  }
  agent.destroy();
  console.log(JSON.stringify(out));
}
console.log(JSON.stringify({ event: "done" }));
clearTimeout(watchdog);
