// The Cableway demo page's own script (served at /demo/demo.js).
//
// Receiving needs no code of ours: turbo.js (Turbo + turbo-rails + Action Cable) defines
// <turbo-cable-stream-source> (WebSocket) and <turbo-stream-source> (SSE), which apply
// every Turbo Stream the server delivers. This script only *sends*: the form's text becomes
// one `append` Turbo Stream per pane, posted in one batch to the real broadcast endpoint
// (POST /_broadcast with the broadcast key), exactly what an application backend does.
import "./turbo.js"

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute("content")
const form = document.getElementById("demo-form")
const input = form.querySelector("input[name=text]")
const status = document.getElementById("demo-status")
const panes = JSON.parse(form.dataset.panes)

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }
const escapeHTML = (text) => String(text).replace(/[&<>"']/g, (c) => ENTITIES[c])

function turboStream(action, target, html = "") {
  const template = action === "remove" ? "" : `<template>${html}</template>`
  return `<turbo-stream action="${action}" target="${escapeHTML(target)}">${template}</turbo-stream>`
}

async function broadcast(publications) {
  const url = meta("cableway-broadcast-url")
  const headers = { "Content-Type": "application/json" }
  const key = meta("cableway-broadcast-key")
  if (key) headers.Authorization = `Bearer ${key}`
  // `data` is JSON-encoded, as cableway.broadcaster does: clients receive the HTML string
  const body = JSON.stringify(publications.map(({ stream, html }) => ({ stream, data: JSON.stringify(html) })))
  const response = await fetch(url, { method: "POST", headers, body })
  const answer = await response.text()
  if (response.status !== 201) throw new Error(`POST ${url} answered ${response.status} ${answer}`)
  return `POST ${url} → ${response.status}`
}

function report(text, failed = false) {
  status.textContent = text
  status.classList.toggle("failed", failed)
}

let sequence = 0

form.addEventListener("submit", async (event) => {
  event.preventDefault()
  const text = input.value.trim()
  if (!text) return
  sequence += 1
  const id = `${Date.now().toString(36)}-${sequence}`
  const time = new Date().toLocaleTimeString()
  const item = (pane) =>
    `<li id="${pane.name}-${id}"><span class="text">${escapeHTML(text)}</span> ` +
    `<time>${escapeHTML(time)}</time> ` +
    `<button type="button" class="remove" data-remove="${id}" title="Remove from both panes">×</button></li>`
  try {
    report(await broadcast(panes.map((pane) => ({ stream: pane.stream, html: turboStream("append", pane.target, item(pane)) }))))
    input.value = ""
  } catch (error) {
    report(error.message, true)
  }
})

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-remove]")
  if (!button) return
  const id = button.dataset.remove
  try {
    report(await broadcast(panes.map((pane) => ({ stream: pane.stream, html: turboStream("remove", `${pane.name}-${id}`) }))))
  } catch (error) {
    report(error.message, true)
  }
})
