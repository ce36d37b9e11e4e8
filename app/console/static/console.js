// The nerve console: plain DOM code, no framework. Text from the API is only ever put in the
// page as text nodes (textContent, Text nodes): never parsed as HTML.
"use strict";

(() => {
  const KEY = "nerve.apiKey";
  const QUEUE_PAGE = 20;
  const EXAMPLES_PAGE = 20;
  const TABLE_ROWS = 300; // entity rows listed under a text; the marks show them all
  const COLOURS = 10;
  const $ = (id) => document.getElementById(id);

  const state = {
    domains: [],
    domain: null,
    detail: null, // the selected domain as GET /v1/domains/{name} returned it
    queueOffset: 0,
    queue: new Map(),
    review: null,
    examplesOffset: 0,
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // --- API -------------------------------------------------------------------------------

  async function api(path, { method = "GET", body, contentType } = {}) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      payload = contentType ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the gateway did not answer: " + err.message);
    }
    const raw = await response.text();
    let data = null;
    try {
      data = raw ? JSON.parse(raw) : null;
    } catch (_) {
      data = null;
    }
    const message = data && data.error && data.error.message;
    if (response.status === 401) {
      showLogin(key ? message || "the API key is not valid" : "");
      throw new ApiError(401, message || "an API key is required");
    }
    if (!response.ok) throw new ApiError(response.status, message || `HTTP ${response.status}`);
    return data;
  }

  const enc = encodeURIComponent;

  // --- messages ------------------------------------------------------------------------------

  function showError(err) {
    if (err instanceof ApiError && err.status === 401) return; // the login prompt says it
    const box = $("error");
    box.textContent = err instanceof Error ? err.message : String(err);
    box.hidden = false;
    $("notice").hidden = true;
  }

  function notice(message) {
    const box = $("notice");
    box.textContent = message;
    box.hidden = false;
    $("error").hidden = true;
  }

  function clearMessages() {
    $("error").hidden = true;
    $("notice").hidden = true;
  }

  // --- sign in -------------------------------------------------------------------------------

  function clearData() {
    state.domains = [];
    state.detail = null;
    state.queue = new Map();
    state.review = null;
    for (const id of ["try-marked", "try-legend", "try-reasons", "try-meta", "queue",
      "editor-text", "editor-legend", "editor-reasons", "examples", "rate-chart",
      "domain-description", "domain-meta", "review-count", "queue-range", "examples-range"]) {
      $(id).replaceChildren();
    }
    for (const table of ["try-entities", "try-timings", "editor-entities", "domain-types"]) {
      $(table).tBodies[0].replaceChildren();
    }
    for (const select of document.querySelectorAll(".domain-select")) select.replaceChildren();
    $("try-result").hidden = true;
    $("editor").hidden = true;
  }

  function showLogin(message) {
    sessionStorage.removeItem(KEY);
    clearData();
    clearMessages();
    $("app").hidden = true;
    $("nav").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-message").textContent = message;
    $("login-message").hidden = !message;
    $("api-key").value = "";
    $("api-key").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("nav").hidden = false;
    $("logout").hidden = !sessionStorage.getItem(KEY);
  }

  // --- offsets: the API counts code points, the DOM counts UTF-16 units -----------------------

  function unitMap(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return null;
    const map = [];
    let unit = 0;
    for (const ch of text) {
      map.push(unit);
      unit += ch.length;
    }
    map.push(unit);
    return map;
  }

  const toUnits = (map, point) => (map ? map[point] : point);

  function toPoints(map, unit) {
    if (!map) return unit;
    let lo = 0;
    let hi = map.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (map[mid] <= unit) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  // --- rendering -----------------------------------------------------------------------------

  function colourOf(type) {
    const types = state.detail ? state.detail.entity_types.map((t) => t.name) : [];
    let index = types.indexOf(type);
    if (index < 0) {
      index = 0;
      for (const ch of type) index = (index * 31 + ch.codePointAt(0)) % 997;
    }
    return "c" + (index % COLOURS);
  }

  // The text as text nodes, each entity a <mark data-type data-start data-end> (code points).
  function renderMarked(container, text, entities) {
    const map = unitMap(text);
    const sorted = [...entities].sort((a, b) => a.start - b.start || a.end - b.end);
    const fragment = document.createDocumentFragment();
    let pos = 0;
    for (const entity of sorted) {
      const start = toUnits(map, entity.start);
      const end = toUnits(map, entity.end);
      if (start === undefined || end === undefined || start < pos || end <= start) continue;
      if (start > pos) fragment.append(text.slice(pos, start));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(start, end);
      mark.className = colourOf(entity.type);
      mark.dataset.type = entity.type;
      mark.dataset.start = String(entity.start);
      mark.dataset.end = String(entity.end);
      const score = typeof entity.score === "number" ? ` ${entity.score.toFixed(2)}` : "";
      mark.title = entity.type + score;
      fragment.append(mark);
      pos = end;
    }
    if (pos < text.length) fragment.append(text.slice(pos));
    container.replaceChildren(fragment);
  }

  function renderLegend(container, entities) {
    const types = [...new Set(entities.map((e) => e.type))].sort();
    container.replaceChildren(...types.map((type) => {
      const item = document.createElement("mark");
      item.className = colourOf(type);
      item.textContent = type;
      return item;
    }));
  }

  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = "badge " + (kind || "");
    span.textContent = text;
    return span;
  }

  function cell(row, value) {
    const td = row.insertCell();
    td.textContent = value;
    return td;
  }

  function moreRow(tbody, hidden, columns) {
    if (hidden <= 0) return;
    const td = tbody.insertRow().insertCell();
    td.colSpan = columns;
    td.className = "muted";
    td.textContent = `… and ${hidden} more (all are marked in the text)`;
  }

  const scoreText = (score) => (typeof score === "number" ? score.toFixed(3) : "—");

  function pageRange(offset, shown, total) {
    return total ? `${offset + 1}–${offset + shown} of ${total}` : "none";
  }

  // --- domains -------------------------------------------------------------------------------

  async function loadDomains() {
    const data = await api("/v1/domains");
    state.domains = data.domains;
    const names = state.domains.map((d) => d.name);
    if (!names.includes(state.domain)) state.domain = names[0] || null;
    for (const select of document.querySelectorAll(".domain-select")) {
      select.replaceChildren(...names.map((name) => new Option(name, name)));
      select.value = state.domain || "";
    }
    if (!names.length) notice("No domain yet: create one with POST /v1/domains.");
    await loadDetail();
  }

  async function loadDetail() {
    state.detail = state.domain ? await api("/v1/domains/" + enc(state.domain)) : null;
    const types = state.detail ? state.detail.entity_types.map((t) => t.name) : [];
    $("review-type").replaceChildren(...types.map((name) => new Option(name, name)));
  }

  async function selectDomain(name) {
    state.domain = name;
    for (const select of document.querySelectorAll(".domain-select")) select.value = name;
    state.queueOffset = 0;
    state.examplesOffset = 0;
    closeEditor();
    clearMessages();
    await loadDetail();
    await showPage();
  }

  // --- pages ---------------------------------------------------------------------------------

  function currentPage() {
    const page = location.hash.replace(/^#/, "");
    return ["try", "review", "domain"].includes(page) ? page : "try";
  }

  async function showPage() {
    const page = currentPage();
    for (const section of document.querySelectorAll(".page")) {
      section.hidden = section.id !== "page-" + page;
    }
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.page === page);
    }
    if (!state.domain) return;
    if (page === "review") await loadQueue();
    if (page === "domain") await loadDomainPage();
  }

  // --- try it --------------------------------------------------------------------------------

  async function runTry(event) {
    event.preventDefault();
    clearMessages();
    const run = $("run");
    run.disabled = true;
    $("run-status").textContent = "running…";
    try {
      const answer = await api("/v1/ner", {
        method: "POST",
        body: { text: $("text").value, domain: $("domain").value, method: $("method").value },
      });
      showAnswer($("text").value, answer);
    } finally {
      run.disabled = false;
      $("run-status").textContent = "";
    }
  }

  function showAnswer(text, answer) {
    const escalate = $("try-escalate");
    escalate.textContent = answer.escalate ? "escalated" : "not escalated";
    escalate.className = "badge " + (answer.escalate ? "warn" : "ok");
    $("try-reasons").replaceChildren(...answer.escalation_reasons.map((r) => badge(r, "reason")));
    renderLegend($("try-legend"), answer.entities);
    renderMarked($("try-marked"), text, answer.entities);
    const body = $("try-entities").tBodies[0];
    body.replaceChildren();
    for (const entity of answer.entities.slice(0, TABLE_ROWS)) {
      const row = body.insertRow();
      cell(row, entity.type);
      cell(row, entity.text);
      cell(row, `${entity.start}–${entity.end}`);
      cell(row, scoreText(entity.score));
    }
    moreRow(body, answer.entities.length - TABLE_ROWS, 4);
    const timings = $("try-timings").tBodies[0];
    timings.replaceChildren();
    for (const [stage, ms] of Object.entries(answer.timings_ms)) {
      const row = timings.insertRow();
      cell(row, stage);
      cell(row, ms.toFixed(1));
    }
    $("try-meta").textContent = `${answer.entities.length} entities · method ${answer.method} · ` +
      `model ${answer.model} · ${answer.examples_used} examples used` +
      `${answer.cached ? " · cached" : ""} · request ${answer.request_id}`;
    $("try-result").hidden = false;
  }

  // --- review queue --------------------------------------------------------------------------

  async function loadQueue() {
    const domain = state.domain;
    const page = await api(`/v1/feedback/escalations?domain=${enc(domain)}` +
      `&offset=${state.queueOffset}&limit=${QUEUE_PAGE}`);
    if (!page.escalations.length && state.queueOffset > 0 && page.total > 0) {
      state.queueOffset = Math.max(0, Math.min(state.queueOffset - QUEUE_PAGE,
        page.total - QUEUE_PAGE));
      return loadQueue();
    }
    state.queue = new Map(page.escalations.map((item) => [item.request_id, item]));
    const list = $("queue");
    list.replaceChildren(...page.escalations.map(queueItem));
    $("review-count").textContent = `${page.total} waiting for review`;
    $("queue-range").textContent = pageRange(state.queueOffset, page.escalations.length,
      page.total);
    $("queue-prev").disabled = state.queueOffset === 0;
    $("queue-next").disabled = state.queueOffset + page.escalations.length >= page.total;
    if (state.review && !state.queue.has(state.review.item.request_id)) closeEditor();
  }

  function queueItem(item) {
    const li = document.createElement("li");
    li.className = "queue-item";
    li.dataset.requestId = item.request_id;
    const head = document.createElement("div");
    head.className = "row";
    const when = document.createElement("span");
    when.className = "muted";
    when.textContent = new Date(item.created_at * 1000).toLocaleString() + " · " + item.method;
    head.append(when, ...item.reasons.map((r) => badge(r, "reason")));
    const preview = document.createElement("p");
    preview.className = "preview";
    preview.textContent = item.text.length > 240 ? item.text.slice(0, 240) + "…" : item.text;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open-review";
    open.textContent = "Review";
    open.addEventListener("click", () => openEditor(item.request_id));
    li.append(head, preview, open);
    return li;
  }

  const spanKey = (spans) => JSON.stringify(spans.map((s) => [s.start, s.end, s.type]));

  function openEditor(requestId) {
    const item = state.queue.get(requestId);
    if (!item) return;
    clearMessages();
    const entities = item.entities.map(({ start, end, type, score }) => ({ start, end, type, score }))
      .sort((a, b) => a.start - b.start);
    state.review = { item, entities, original: spanKey(entities) };
    for (const li of $("queue").children) {
      li.classList.toggle("selected", li.dataset.requestId === requestId);
    }
    $("editor-reasons").replaceChildren(...item.reasons.map((r) => badge(r, "reason")));
    $("editor").hidden = false;
    renderEditor();
  }

  function closeEditor() {
    state.review = null;
    $("editor").hidden = true;
    for (const li of $("queue").children) li.classList.remove("selected");
  }

  function renderEditor() {
    const { item, entities } = state.review;
    renderLegend($("editor-legend"), entities);
    renderMarked($("editor-text"), item.text, entities);
    const body = $("editor-entities").tBodies[0];
    body.replaceChildren();
    const map = unitMap(item.text);
    entities.forEach((entity, index) => {
      const row = body.insertRow();
      cell(row, entity.type);
      cell(row, item.text.slice(toUnits(map, entity.start), toUnits(map, entity.end)));
      cell(row, scoreText(entity.score));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-span";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => {
        state.review.entities.splice(index, 1);
        renderEditor();
      });
      row.insertCell().append(remove);
    });
  }

  function unitOffset(container, node, offset) {
    const range = document.createRange();
    range.selectNodeContents(container);
    range.setEnd(node, offset);
    return range.toString().length;
  }

  function addSelectedSpan() {
    clearMessages();
    if (!state.review) return;
    const container = $("editor-text");
    const selection = window.getSelection();
    if (!selection.rangeCount || selection.isCollapsed) {
      showError("Select some text of the answer first.");
      return;
    }
    const range = selection.getRangeAt(0);
    if (!container.contains(range.startContainer) || !container.contains(range.endContainer)) {
      showError("Select text inside the answer's text.");
      return;
    }
    const text = state.review.item.text;
    let start = unitOffset(container, range.startContainer, range.startOffset);
    let end = unitOffset(container, range.endContainer, range.endOffset);
    while (start < end && /\s/.test(text[start])) start += 1;
    while (end > start && /\s/.test(text[end - 1])) end -= 1;
    if (end <= start) {
      showError("The selection holds only spaces.");
      return;
    }
    const type = $("review-type").value;
    if (!type) {
      showError("This domain has no entity type to pick.");
      return;
    }
    const map = unitMap(text);
    const span = { start: toPoints(map, start), end: toPoints(map, end), type, score: null };
    const kept = state.review.entities.filter((e) => e.end <= span.start || e.start >= span.end);
    const replaced = state.review.entities.length - kept.length;
    state.review.entities = [...kept, span].sort((a, b) => a.start - b.start);
    selection.removeAllRanges();
    renderEditor();
    if (replaced) notice(`The new ${type} replaced ${replaced} overlapping entit${replaced > 1 ? "ies" : "y"}.`);
  }

  async function accept() {
    if (!state.review) return;
    clearMessages();
    const { item, entities, original } = state.review;
    const outcome = spanKey(entities) === original ? "resolved" : "escalated";
    const button = $("accept");
    button.disabled = true;
    try {
      const out = await api("/v1/feedback", {
        method: "POST",
        body: {
          request_id: item.request_id,
          outcome,
          entities: entities.map(({ start, end, type }) => ({ start, end, type })),
        },
      });
      closeEditor();
      notice(`Recorded as ${out.outcome}; example ${out.example_id} added to ${out.domain} ` +
        `(version ${out.domain_version}).`);
      await loadQueue();
    } catch (err) {
      if (err instanceof ApiError && (err.status === 409 || err.status === 404)) {
        closeEditor(); // another reviewer recorded it, or it expired: it leaves the queue
        await loadQueue().catch(() => {});
      }
      throw err;
    } finally {
      button.disabled = false;
    }
  }

  // --- domain --------------------------------------------------------------------------------

  async function loadDomainPage() {
    await loadDetail(); // fresh: reviews and uploads elsewhere change the count and version
    const detail = state.detail;
    if (!detail) return;
    $("domain-description").textContent = detail.description || "";
    $("domain-meta").textContent = `version ${detail.version} · ${detail.examples} examples · ` +
      `score threshold ${detail.score_threshold}`;
    const body = $("domain-types").tBodies[0];
    body.replaceChildren();
    for (const type of detail.entity_types) {
      const row = body.insertRow();
      const name = document.createElement("mark");
      name.className = colourOf(type.name);
      name.textContent = type.name;
      row.insertCell().append(name);
      cell(row, type.description || "");
      cell(row, detail.required_types.includes(type.name) ? "yes" : "");
    }
    await Promise.all([loadRate(), loadExamples()]);
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svg(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  async function loadRate() {
    const data = await api(`/v1/feedback/escalation-rate?domain=${enc(state.domain)}&hours=24`);
    const width = 480;
    const height = 110;
    const plot = 90;
    const barWidth = width / data.hours.length;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
    chart.append(svg("line", { x1: 0, y1: plot, x2: width, y2: plot, class: "axis" }));
    let answers = 0;
    let escalated = 0;
    data.hours.forEach((hour, index) => {
      answers += hour.answers;
      escalated += hour.escalated;
      const rate = hour.rate || 0;
      const barHeight = Math.max(hour.answers ? 1 : 0, rate * plot);
      const bar = svg("rect", {
        x: index * barWidth + 1, y: plot - barHeight, width: barWidth - 2, height: barHeight,
        class: "bar",
      });
      const title = svg("title", {});
      const at = new Date(hour.start * 1000);
      title.textContent = `${at.toLocaleString()}: ${hour.escalated} of ${hour.answers} ` +
        `answers escalated${hour.answers ? ` (${Math.round(rate * 100)}%)` : ""}`;
      bar.append(title);
      chart.append(bar);
    });
    const first = new Date(data.hours[0].start * 1000);
    const label = (x, anchor, text) => {
      const t = svg("text", { x, y: height - 4, "text-anchor": anchor, class: "label" });
      t.textContent = text;
      return t;
    };
    chart.append(label(0, "start", `${first.getHours()}:00`), label(width, "end", "now"));
    const top = svg("text", { x: 2, y: 10, class: "label" });
    top.textContent = "100%";
    chart.append(top);
    const summary = document.createElement("p");
    summary.id = "rate-summary";
    summary.className = "muted";
    summary.textContent = answers
      ? `${escalated} of ${answers} answers escalated (${Math.round(100 * escalated / answers)}%)`
      : "No answers in the last 24 hours.";
    $("rate-chart").replaceChildren(chart, summary);
  }

  async function loadExamples() {
    const domain = state.domain;
    const page = await api(`/v1/domains/${enc(domain)}/examples?offset=${state.examplesOffset}` +
      `&limit=${EXAMPLES_PAGE}`);
    if (!page.examples.length && state.examplesOffset > 0 && page.total > 0) {
      state.examplesOffset = Math.max(0, page.total - EXAMPLES_PAGE);
      return loadExamples();
    }
    $("examples").replaceChildren(...page.examples.map((example) => {
      const li = document.createElement("li");
      li.className = "example";
      li.dataset.exampleId = example.id;
      const text = document.createElement("div");
      text.className = "marked";
      renderMarked(text, example.text, example.entities);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete-example";
      remove.textContent = "Delete";
      remove.addEventListener("click", () => guarded(deleteExample)(example.id));
      const id = document.createElement("span");
      id.className = "muted";
      id.textContent = example.id;
      li.append(text, id, remove);
      return li;
    }));
    $("examples-range").textContent = pageRange(state.examplesOffset, page.examples.length,
      page.total);
    $("examples-prev").disabled = state.examplesOffset === 0;
    $("examples-next").disabled = state.examplesOffset + page.examples.length >= page.total;
  }

  async function deleteExample(id) {
    if (!window.confirm(`Delete example ${id}?`)) return;
    await api(`/v1/domains/${enc(state.domain)}/examples/${enc(id)}`, { method: "DELETE" });
    notice(`Example ${id} deleted.`);
    await loadDomainPage();
  }

  async function upload(event) {
    event.preventDefault();
    clearMessages();
    const file = $("upload-file").files[0];
    if (!file) {
      showError("Choose a CoNLL/BIO (token<TAB>tag) or JSON file first.");
      return;
    }
    const body = await file.text();
    const json = /^\s*[[{]/.test(body);
    $("upload-status").textContent = "uploading…";
    try {
      const out = await api(`/v1/domains/${enc(state.domain)}/examples`, {
        method: "POST",
        body,
        contentType: json ? "application/json" : "text/plain",
      });
      notice(`${out.added} examples added to ${out.domain} (version ${out.version}).`);
      $("upload-file").value = "";
      await loadDomainPage();
    } finally {
      $("upload-status").textContent = "";
    }
  }

  async function deleteDomain() {
    const name = state.domain;
    if (!name || !window.confirm(`Delete domain ${name} and all its examples?`)) return;
    const out = await api("/v1/domains/" + enc(name), { method: "DELETE" });
    notice(`Domain ${name} deleted with ${out.examples_deleted} examples.`);
    state.domain = null;
    await loadDomains();
    await showPage();
  }

  // --- wiring --------------------------------------------------------------------------------

  // Runs an async handler, showing any error as the API's own message.
  const guarded = (handler) => (...args) => handler(...args).catch(showError);

  async function start() {
    try {
      await loadDomains();
    } catch (err) {
      showError(err);
      return;
    }
    showApp();
    await showPage().catch(showError);
  }

  function wire() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("api-key").value.trim());
      $("login-message").hidden = true;
      start();
    });
    $("logout").addEventListener("click", () => showLogin(""));
    window.addEventListener("hashchange", guarded(async () => {
      clearMessages();
      await showPage();
    }));
    for (const select of document.querySelectorAll(".domain-select")) {
      select.addEventListener("change", guarded(() => selectDomain(select.value)));
    }
    $("try-form").addEventListener("submit", guarded(runTry));
    $("review-refresh").addEventListener("click", guarded(loadQueue));
    $("queue-prev").addEventListener("click", guarded(async () => {
      state.queueOffset = Math.max(0, state.queueOffset - QUEUE_PAGE);
      await loadQueue();
    }));
    $("queue-next").addEventListener("click", guarded(async () => {
      state.queueOffset += QUEUE_PAGE;
      await loadQueue();
    }));
    $("add-span").addEventListener("click", addSelectedSpan);
    $("accept").addEventListener("click", guarded(accept));
    $("editor-close").addEventListener("click", closeEditor);
    $("examples-prev").addEventListener("click", guarded(async () => {
      state.examplesOffset = Math.max(0, state.examplesOffset - EXAMPLES_PAGE);
      await loadExamples();
    }));
    $("examples-next").addEventListener("click", guarded(async () => {
      state.examplesOffset += EXAMPLES_PAGE;
      await loadExamples();
    }));
    $("upload-form").addEventListener("submit", guarded(upload));
    $("delete-domain").addEventListener("click", guarded(deleteDomain));
  }

  wire();
  start();
})();
