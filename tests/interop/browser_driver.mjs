// Drives Debian's headless Chromium with playwright-core (never a downloaded browser) for
// tests/interop/test_browser.py.
//
// Usage: node browser_driver.mjs '<scenario JSON>'
//
// Scenario (all optional):
//   {"executable": "/usr/bin/chromium",   // the browser binary (playwright's executablePath)
//    "timeout_ms": 30000,                  // watchdog: close the browser and exit 3
//    "step_timeout_ms": 10000,             // default bound of each waiting command
//    "args": [],                           // more Chromium flags (e.g. a trusted key: TLS tests)
//    "debug": false}
//
// Prints one JSON line per observation, each with "t" (ms since start):
//   {"event":"launched","version":...,"pid":<node pid>}
//   {"event":"request","method","url"}                    every request the page makes
//   {"event":"request_headers","url","origin"}            its Origin header, as sent
//   {"event":"response","url","status"}                   (SSE: when the headers arrive)
//   {"event":"requestfailed","url","failure"}
//   {"event":"websocket","url"} / {"event":"ws_close","url"}
//   {"event":"ws_frame","dir":"in"|"out","url","payload"} every WebSocket frame (text)
//   {"event":"ws_handshake","url","status","request","response"} the upgrade's headers as
//                                         the network stack sent and got them (CDP)
//   {"event":"console","type","text"} / {"event":"pageerror","message"}
//   {"event":"done","seq":N,"ok":true,"result":...} / {"event":"done","seq":N,"ok":false,"error"}
//   {"event":"exit","code":N}
//
// Commands, one JSON object per stdin line ({"op":..., "seq":N, ...}); each waiting command
// is bounded by its "timeout_ms" (default step_timeout_ms):
//   goto {url}                        load a page (until "load")
//   wait_selector {selector, state}   state: attached (default) | detached | visible
//   wait_text {selector, text}        the element exists and its textContent contains text
//   texts {selector}                  -> [textContent of every match], trimmed
//   html {selector}                   -> outerHTML of the first match (or null)
//   fill {selector, value} / click {selector} / press {selector, key}
//   screenshot {path}                 full page PNG
//   close                             close the browser, then exit 0
// End of stdin closes the browser and exits too, so the test never leaves Chromium behind.
//
// Launch flags: --headless (playwright's headless mode) --no-sandbox --disable-gpu
// --disable-quic --no-first-run --disable-background-networking --disable-component-update
// --disable-sync, with a fresh temporary profile (playwright creates and removes it).
import { createInterface } from "node:readline"
import { chromium } from "playwright-core"

const scenario = JSON.parse(process.argv[2] || "{}")
const started = Date.now()
const stepTimeout = scenario.step_timeout_ms ?? 10_000

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Date.now() - started, ...fields }) + "\n")
}

function debug(...parts) {
  if (scenario.debug) process.stderr.write(parts.join(" ") + "\n")
}

let browser = null
let closing = null

async function shutdown(code) {
  if (!closing) {
    closing = (async () => {
      if (browser) {
        try {
          await browser.close()
        } catch (error) {
          process.stderr.write(`browser.close failed: ${error}\n`)
        }
      }
      emit("exit", { code })
      process.exit(code)
    })()
  }
  return closing
}

const watchdog = setTimeout(() => {
  process.stderr.write(`watchdog: ${scenario.timeout_ms ?? 30_000} ms elapsed\n`)
  shutdown(3)
}, scenario.timeout_ms ?? 30_000)
watchdog.unref()

process.on("SIGTERM", () => shutdown(143))
process.on("SIGINT", () => shutdown(130))

browser = await chromium.launch({
  executablePath: scenario.executable ?? "/usr/bin/chromium",
  headless: true,
  chromiumSandbox: false, // adds --no-sandbox (the tests run as root)
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    ...(scenario.args ?? []),
  ],
  timeout: stepTimeout,
})
const context = await browser.newContext({ viewport: { width: 1100, height: 760 } })
const page = await context.newPage()
// the WebSocket handshake's headers (playwright does not expose them): Chromium's own view
const cdp = await context.newCDPSession(page)
const handshakes = new Map()
cdp.on("Network.webSocketCreated", ({ requestId, url }) => handshakes.set(requestId, { url }))
cdp.on("Network.webSocketWillSendHandshakeRequest", ({ requestId, request }) => {
  handshakes.set(requestId, { ...handshakes.get(requestId), request: request.headers })
})
cdp.on("Network.webSocketHandshakeResponseReceived", ({ requestId, response }) => {
  const seen = handshakes.get(requestId) ?? {}
  emit("ws_handshake", {
    url: seen.url ?? null,
    status: response.status,
    request: seen.request ?? null,
    response: response.headers,
  })
})
await cdp.send("Network.enable")

page.on("console", (message) => emit("console", { type: message.type(), text: message.text() }))
page.on("pageerror", (error) => emit("pageerror", { message: String(error?.stack ?? error) }))
page.on("request", (request) => {
  emit("request", { method: request.method(), url: request.url() })
  // the headers the network stack really sent (Origin included) arrive later
  request.allHeaders().then(
    (headers) => emit("request_headers", { url: request.url(), origin: headers.origin ?? null }),
    () => {},
  )
})
page.on("response", (response) => emit("response", { url: response.url(), status: response.status() }))
page.on("requestfailed", (request) =>
  emit("requestfailed", { url: request.url(), failure: request.failure()?.errorText ?? null }),
)
page.on("websocket", (socket) => {
  const url = socket.url()
  emit("websocket", { url })
  socket.on("framereceived", ({ payload }) => emit("ws_frame", { dir: "in", url, payload: String(payload) }))
  socket.on("framesent", ({ payload }) => emit("ws_frame", { dir: "out", url, payload: String(payload) }))
  socket.on("close", () => emit("ws_close", { url }))
})

emit("launched", { version: browser.version(), pid: process.pid })

const commands = {
  async goto({ url, timeout_ms }) {
    const response = await page.goto(url, { waitUntil: "load", timeout: timeout_ms ?? stepTimeout })
    return { status: response?.status() ?? null, url: page.url() }
  },
  async wait_selector({ selector, state = "attached", timeout_ms }) {
    await page.waitForSelector(selector, { state, timeout: timeout_ms ?? stepTimeout })
    return true
  },
  async wait_text({ selector, text, timeout_ms }) {
    await page.waitForFunction(
      ([sel, expected]) => document.querySelector(sel)?.textContent?.includes(expected) ?? false,
      [selector, text],
      { timeout: timeout_ms ?? stepTimeout, polling: "raf" },
    )
    return true
  },
  async texts({ selector }) {
    return page.$$eval(selector, (elements) => elements.map((el) => el.textContent.trim()))
  },
  async html({ selector }) {
    return page.evaluate((sel) => document.querySelector(sel)?.outerHTML ?? null, selector)
  },
  async fill({ selector, value, timeout_ms }) {
    await page.fill(selector, value, { timeout: timeout_ms ?? stepTimeout })
    return true
  },
  async click({ selector, timeout_ms }) {
    await page.click(selector, { timeout: timeout_ms ?? stepTimeout })
    return true
  },
  async press({ selector, key, timeout_ms }) {
    await page.press(selector, key, { timeout: timeout_ms ?? stepTimeout })
    return true
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true })
    return path
  },
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  const { op, seq, ...args } = JSON.parse(line)
  if (op === "close") {
    emit("done", { seq, ok: true, result: null })
    await shutdown(0)
  }
  debug("command", op, JSON.stringify(args))
  const command = commands[op]
  if (!command) {
    emit("done", { seq, ok: false, error: `unknown op ${op}` })
    continue
  }
  try {
    emit("done", { seq, ok: true, result: await command(args) })
  } catch (error) {
    emit("done", { seq, ok: false, error: String(error?.message ?? error) })
  }
}
await shutdown(0) // stdin closed: the test is done with us
