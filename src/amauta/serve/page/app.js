// Amauta's chat page: talks to the same OpenAI-compatible API as any client, streaming server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];          // the conversation sent with each question: [{role, content}]
let controller = null;       // aborts the running stream (the server then stops generating)
let cards = {};

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showSources(sources) {
  const list = $("sources");
  list.innerHTML = "";
  if (!sources || !sources.length) {
    list.innerHTML = '<li class="muted">Sin fuentes para esta respuesta.</li>';
    return;
  }
  for (const s of sources) {
    const li = document.createElement("li");
    li.value = s.number;
    const where = [s.source.split("/").pop(), s.article, s.page > 1 ? "p. " + s.page : null].filter(Boolean).join(", ");
    const title = document.createElement("strong");
    title.textContent = where;
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "ver fragmento";
    const body = document.createElement("div");
    body.textContent = s.text;
    details.append(summary, body);
    li.append(title, details);
    list.appendChild(li);
  }
}

async function loadModels() {
  // The key lives in sessionStorage: it survives a reload of this tab, not the closing of the browser.
  $("key-row").querySelector("input").value = sessionStorage.getItem("amauta-key") || "";
  // Without the key (when the server has one) /health answers only {"status": "ok"}: then ask for the key.
  const health = await (await fetch("/health", { headers: headers() })).json();
  $("key-row").hidden = health.auth === false;
  $("rag-row").hidden = !health.rag;
  if (health.rag) $("rag-row").title = "índice: " + health.rag;
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) {
    $("status").textContent = "escribe la clave de la API y recarga la página";
    return;
  }
  const models = (await response.json()).data;
  $("model").innerHTML = "";
  for (const card of models) {
    cards[card.id] = card;
    const option = document.createElement("option");
    option.value = card.id;
    option.textContent = card.parent ? `${card.id} (adaptador de ${card.parent})` : card.id;
    $("model").appendChild(option);
  }
  onModelChange();
  $("status").textContent = `${health.backend} · ${models.length} modelo(s)` + (health.rag ? ` · RAG: ${health.rag}` : "");
}

function onModelChange() {
  const card = cards[$("model").value];
  if (!card) return;
  for (const option of $("strategy").options) {
    option.disabled = option.value !== "" && !card.strategies.includes(option.value);
  }
  if ($("strategy").selectedOptions[0].disabled) $("strategy").value = "";
}

function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = { model: $("model").value, messages, stream: true, max_tokens: Number($("max-tokens").value) || 256 };
  const strategy = $("strategy").value;
  if (strategy === "greedy") body.temperature = 0;
  if (strategy === "sampling") body.temperature = Number($("temperature").value) || 0.7;
  const amauta = {};
  if (strategy === "contrastive" || strategy === "beam") amauta.strategy = strategy;
  if (!$("rag-row").hidden && !$("use-rag").checked) amauta.rag = false;
  if (Object.keys(amauta).length) body.amauta = amauta;
  return body;
}

// Read `data: {...}` events from a fetch response body as they arrive.
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function ask(question) {
  history.push({ role: "user", content: question });
  addMessage("user", question);
  const answer = addMessage("assistant streaming", "");
  controller = new AbortController();
  $("send").hidden = true;
  $("stop").hidden = false;
  let text = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: controller.signal,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(error.error ? error.error.message : response.statusText);
    }
    for await (const data of serverEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) {
        text += choice.delta.content;
        answer.textContent = text;
        answer.scrollIntoView({ block: "end" });
      }
      if (chunk.sources) showSources(chunk.sources);
    }
    history.push({ role: "assistant", content: text });
  } catch (error) {
    if (error.name === "AbortError") {
      history.push({ role: "assistant", content: text });
    } else {
      history.pop();
      answer.classList.add("error");
      answer.textContent = "Error: " + error.message;
    }
  } finally {
    answer.classList.remove("streaming");
    answer.dataset.done = "1";
    controller = null;
    $("send").hidden = false;
    $("stop").hidden = true;
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || controller) return;
  $("question").value = "";
  ask(question);
});
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("reset").addEventListener("click", () => {
  history.length = 0;
  $("messages").innerHTML = "";
  showSources([]);
});
$("model").addEventListener("change", onModelChange);
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("amauta-key", $("api-key").value.trim());
  loadModels();
});
loadModels().catch((error) => { $("status").textContent = "sin conexión: " + error.message; });
