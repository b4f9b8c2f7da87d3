// The chat application of rpc.md §7.2 written with @anycable/serverless-js (the official JS
// RPC SDK), served over node:http on 127.0.0.1 for Cableway's HTTP RPC to call.
//
// Usage: node serverless_app.mjs '{"key": "<rpc key>", "broadcast_url": "...", "broadcast_key": "..."}'
// Prints one JSON line per event: {"event":"ready","port":N}, then
// {"event":"connect"|"disconnect"|"unsubscribed", ...} as the app sees them.
//
// @anycable/serverless-js 0.1.0 (the only version on npm) cannot be imported by plain Node
// ESM: its dist/ imports directories ("./rpc") without "/index.js" (ERR_UNSUPPORTED_DIR_IMPORT;
// fixed upstream in 0.2.2). A resolve hook retries such specifiers with "/index.js"; the
// package itself is untouched (rpc.md §7.2).
import { register } from "node:module";
import http from "node:http";

register(
  "data:text/javascript," +
    encodeURIComponent(`
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (specifier.startsWith(".") && (error.code === "ERR_UNSUPPORTED_DIR_IMPORT" || error.code === "ERR_MODULE_NOT_FOUND")) {
      try { return await next(specifier + "/index.js", context); } catch { return next(specifier + ".js", context); }
    }
    throw error;
  }
}`),
);

const { Application, Channel, Status, broadcaster, handler } = await import(
  "@anycable/serverless-js"
);

const options = JSON.parse(process.argv[2] ?? "{}");
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const broadcast = broadcaster(options.broadcast_url, options.broadcast_key);

class ChatChannel extends Channel {
  async subscribed(handle, params) {
    if (!params?.room) {
      handle.reject();
      return;
    }
    handle.streamFrom(`room:${params.room}`);
  }

  async unsubscribed(handle, params) {
    emit({ event: "unsubscribed", params });
  }

  async speak(handle, params, data) {
    handle.transmit({ echo: data.message });
    await broadcast(`room:${params.room}`, { message: data.message, from: handle.identifiers.user });
  }

  async leave(handle, params) {
    handle.stopStreamFrom(`room:${params.room}`);
  }
}

class ChatApp extends Application {
  async connect(handle) {
    const user = new URL(handle.env.url).searchParams.get("user");
    if (!user) {
      handle.reject();
      return;
    }
    handle.identifiedBy({ user });
    emit({ event: "connect", user, headers: handle.env.headers });
  }

  async disconnect(handle) {
    emit({ event: "disconnect", identifiers: handle.identifiers });
  }
}

const app = new ChatApp();
app.registerChannel("chat", new ChatChannel());

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  if (options.key && req.headers.authorization !== `Bearer ${options.key}`) {
    res.writeHead(401).end("Unauthorized");
    return;
  }
  const request = new Request(`http://127.0.0.1${req.url}`, {
    method: "POST",
    headers: req.headers,
    body: Buffer.concat(chunks),
  });
  let answer;
  try {
    answer = await handler(request, app);
  } catch (error) {
    emit({ event: "error", message: String(error) });
    answer = { status: Status.ERROR, error_msg: "Server error" };
  }
  const body = JSON.stringify(answer);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});

server.listen(0, "127.0.0.1", () => emit({ event: "ready", port: server.address().port }));
process.stdin.on("end", () => server.close(() => process.exit(0)));
process.stdin.resume();
