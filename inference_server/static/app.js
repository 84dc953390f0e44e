// The bundled server's chat page. No dependencies and no build step: the page must work
// from the server alone (no CDN; the Content-Security-Policy forbids anything else).
//
// Model output is untrusted: it is never assigned to innerHTML. The Markdown renderer below
// builds DOM nodes and puts text in with textContent, so "<script>" or "<img onerror>" in
// a reply shows as those characters and never runs.
"use strict";

const KEY_STORE = "aitk.apiKey"; // sessionStorage: gone when the tab closes
const $ = (id) => document.getElementById(id);
const els = {
  model: $("model"), messages: $("messages"), keyForm: $("key-form"), key: $("key"),
  keyError: $("key-error"), chatForm: $("chat-form"), prompt: $("prompt"), send: $("send"),
  stop: $("stop"), status: $("status"), newChat: $("new-chat"), forgetKey: $("forget-key"),
};
let history = []; // [{role, content}] sent with every request: the conversation so far
let controller = null; // the AbortController of the reply streaming now

// ------------------------------------------------------------------ Markdown (safe)
function el(tag, ...children) {
  const node = document.createElement(tag);
  for (const child of children) node.append(child);
  return node;
}

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([\s\S]+?)\*\*|__([\s\S]+?)__|\*([^\s*][\s\S]*?)\*|_([^\s_][\s\S]*?)_(?![A-Za-z0-9])|\[([^\]\n]+)\]\(([^)\s]+)\)/g;

function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) out.push(el("code", m[2].trim() || m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) out.push(el("strong", ...inline(m[3] ?? m[4])));
    else if (m[5] !== undefined || m[6] !== undefined) out.push(el("em", ...inline(m[5] ?? m[6])));
    else out.push(link(m[7], m[8]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

function link(label, href) {
  let url = null;
  try { url = new URL(href); } catch { /* not absolute: shown as text */ }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    return document.createTextNode(`[${label}](${href})`); // never javascript:, data:, ...
  }
  const a = el("a", ...inline(label));
  a.href = url.href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return a;
}

const LIST_ITEM = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;

function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s{0,3}(```+|~~~+)\s*([\w+-]*)/);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (or the end of a reply still streaming)
      const code = el("code", body.join("\n"));
      if (fence[2]) code.dataset.lang = fence[2];
      frag.append(el("pre", code));
      continue;
    }
    const heading = line.match(/^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      frag.append(el(`h${Math.min(heading[1].length + 2, 6)}`, ...inline(heading[2])));
      i++;
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const ordered = /\d/.test(line.match(LIST_ITEM)[1]);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length && LIST_ITEM.test(lines[i])) {
        let item = lines[i++].match(LIST_ITEM)[2];
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !LIST_ITEM.test(lines[i])) item += " " + lines[i++].trim();
        list.append(el("li", ...inline(item)));
      }
      frag.append(list);
      continue;
    }
    if (/^\s{0,3}>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s{0,3}>\s?/, ""));
      const quote = el("blockquote");
      quote.append(renderMarkdown(quoted.join("\n")));
      frag.append(quote);
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !LIST_ITEM.test(lines[i]) &&
           !/^\s{0,3}(```|~~~|#{1,6}\s|>)/.test(lines[i])) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]);
    frag.append(el("p", ...inline(para.join("\n"))));
  }
  return frag;
}

// ------------------------------------------------------------------ API
function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

async function api(path, init = {}) {
  const headers = { ...(init.headers || {}), Authorization: `Bearer ${apiKey()}` };
  return fetch(path, { ...init, headers, cache: "no-store", credentials: "omit" });
}

async function errorText(response) {
  let detail = "";
  try { detail = (await response.json())?.error?.message || ""; } catch { /* not JSON */ }
  return `${response.status} ${response.statusText || ""}`.trim() + (detail ? `: ${detail}` : "");
}

async function* sseEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    // Cancelling the reader (Stop) ends the read as if the stream had ended: say why.
    if (signal.aborted) throw new DOMException("stopped", "AbortError");
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// ------------------------------------------------------------------ UI
function showKeyForm(message) {
  els.keyForm.hidden = false;
  els.chatForm.hidden = true;
  els.keyError.hidden = !message;
  els.keyError.textContent = message || "";
  els.key.focus();
}

async function connect(key) {
  sessionStorage.setItem(KEY_STORE, key);
  setStatus("Connecting…");
  let response;
  try {
    response = await api("/v1/models");
  } catch (err) {
    setStatus("");
    return showKeyForm(`Could not reach the server: ${err.message}`);
  }
  setStatus("");
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORE);
    return showKeyForm("The server refused this API key.");
  }
  if (!response.ok) return showKeyForm(`The server could not list its models: ${await errorText(response)}`);
  const models = (await response.json()).data.map((card) => card.id);
  els.model.replaceChildren(...models.map((id) => { const o = el("option", id); o.value = id; return o; }));
  els.model.disabled = models.length < 2;
  els.keyForm.hidden = true;
  els.keyError.hidden = true;
  els.chatForm.hidden = false;
  els.prompt.focus();
}

function setStatus(text) { els.status.textContent = text; }

function bubble(role) {
  const node = el("div");
  node.className = `msg ${role}`;
  els.messages.append(node);
  return node;
}

function scrollDown() { els.messages.scrollTop = els.messages.scrollHeight; }

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.hidden = !busy;
  els.model.disabled = busy || els.model.options.length < 2;
}

async function send(text) {
  const model = els.model.value;
  history.push({ role: "user", content: text });
  bubble("user").textContent = text;
  const answer = bubble("assistant");
  answer.dataset.model = model;
  scrollDown();
  controller = new AbortController();
  setBusy(true);
  setStatus(`${model} is answering…`);
  const started = performance.now();
  let reply = "", firstToken = null, usage = null, finish = null, frame = 0;
  const paint = () => {
    cancelAnimationFrame(frame); // a frame still pending would wipe the meta line added below
    frame = 0;
    answer.replaceChildren(renderMarkdown(reply));
    scrollDown();
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", signal: controller.signal, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: history, stream: true, stream_options: { include_usage: true } }),
    });
    if (!response.ok) {
      if (response.status === 401) {
        sessionStorage.removeItem(KEY_STORE);
        showKeyForm("The server refused this API key.");
      }
      throw new Error(await errorText(response));
    }
    for await (const event of sseEvents(response.body, controller.signal)) {
      if (event.error) throw new Error(event.error.message || "the server ended the reply with an error");
      if (event.usage) usage = event.usage;
      const choice = event.choices && event.choices[0];
      if (!choice) continue;
      if (choice.finish_reason) finish = choice.finish_reason;
      const delta = choice.delta && choice.delta.content;
      if (delta) {
        if (firstToken === null) firstToken = performance.now() - started;
        reply += delta;
        if (!frame) frame = requestAnimationFrame(paint);
      }
    }
    paint();
    history.push({ role: "assistant", content: reply });
    answer.append(meta(started, firstToken, usage, finish));
    setStatus("");
  } catch (err) {
    if (controller.signal.aborted) {
      paint();
      // A stopped reply stays in the conversation, as the user saw it.
      history.push({ role: "assistant", content: reply });
      answer.append(meta(started, firstToken, null, "stopped"));
      setStatus("Stopped.");
    } else {
      history.pop(); // the question got no answer: do not send it again next turn
      cancelAnimationFrame(frame); // or a pending paint would put the partial text back over the error
      answer.classList.add("error");
      answer.replaceChildren(el("span", `Error: ${err.message}`));
      setStatus("");
    }
  } finally {
    controller = null;
    setBusy(false);
    scrollDown();
  }
}

function meta(started, firstToken, usage, finish) {
  const seconds = (performance.now() - started) / 1000;
  const parts = [];
  if (firstToken !== null) parts.push(`first token ${Math.round(firstToken)} ms`);
  if (usage && usage.completion_tokens) {
    parts.push(`${usage.completion_tokens} tokens`, `${(usage.completion_tokens / seconds).toFixed(1)} tokens/s`);
  }
  if (finish && finish !== "stop") parts.push(finish);
  const node = el("span", parts.join(" · "));
  node.className = "meta";
  return node;
}

els.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = els.key.value.trim();
  els.key.value = "";
  // A header carries only visible ASCII: anything else would fail inside fetch, unexplained.
  if (/[^\x21-\x7e]/.test(key)) return showKeyForm("An API key is visible ASCII characters with no spaces.");
  if (key) connect(key);
});

els.chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = els.prompt.value.trim();
  if (!text || controller) return;
  els.prompt.value = "";
  send(text);
});

els.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.chatForm.requestSubmit();
  }
});

els.stop.addEventListener("click", () => { if (controller) controller.abort(); });

els.newChat.addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  els.messages.replaceChildren();
  setStatus("");
});

els.forgetKey.addEventListener("click", () => {
  if (controller) controller.abort();
  sessionStorage.removeItem(KEY_STORE);
  showKeyForm("");
});

if (apiKey()) connect(apiKey()); else showKeyForm("");
