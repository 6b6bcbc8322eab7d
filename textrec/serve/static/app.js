// textrec page: the post list (paged, searchable), the chosen post, its related posts.
// It logs a view when a post is opened and a click when a related post is chosen, under an
// anonymous id kept in this browser, unless the browser asks not to be tracked.
"use strict";

const PAGE = 20;
const state = { offset: 0, total: 0, q: "", selected: null, clicked: null };
const $ = (id) => document.getElementById(id);

// Do Not Track, or Global Privacy Control where the browser exposes it: send nothing.
const tracking = !(navigator.doNotTrack === "1" || window.doNotTrack === "1"
  || navigator.globalPrivacyControl === true);

// The reader's anonymous id and its key: made by the server (POST /readers) the first time
// this browser logs something, and kept in localStorage. The key proves to the server that the
// id is this browser's (X-Reader-Key): it opens the reader's own data, and nobody else's. An id
// kept by an older page has no key; its events are still logged under it.
const READER = "textrec-reader";
const READER_KEY = "textrec-reader-key";
let readerMade = null;

function reader() {
  const id = localStorage.getItem(READER);
  if (id) return Promise.resolve({ id, key: localStorage.getItem(READER_KEY) });
  if (!readerMade) {
    readerMade = fetch("/readers", { method: "POST" })
      .then((res) => {
        if (!res.ok) throw new Error(`${res.status}`);
        return res.json();
      })
      .then((made) => {
        localStorage.setItem(READER, made.id);
        localStorage.setItem(READER_KEY, made.key);
        return { id: made.id, key: made.key };
      })
      .catch((err) => {
        readerMade = null; // try again with the next event
        throw err;
      });
  }
  return readerMade;
}

function logEvents(events) {
  if (!tracking || !events.length) return;
  reader().then(({ id }) => fetch("/events", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ events: events.map((e) => ({ user: id, ...e })) }),
    keepalive: true,
  })).catch(() => {}); // a lost event is not the reader's problem
}

// "Forget what I read": the server deletes this reader's events, the browser its id and key.
async function forgetMe() {
  const id = localStorage.getItem(READER);
  if (!id) return "Nothing to forget: this browser has no reader id.";
  const key = localStorage.getItem(READER_KEY);
  const res = await fetch(`/users/${encodeURIComponent(id)}`, {
    method: "DELETE",
    headers: key ? { "X-Reader-Key": key } : {},
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) return `Could not forget (${res.status}: ${body.detail || res.statusText}).`;
  localStorage.removeItem(READER);
  localStorage.removeItem(READER_KEY);
  return `Forgotten: ${body.forgotten} event(s) deleted; a new anonymous id starts afresh.`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function getJSON(url, options) {
  const res = await fetch(url, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${res.status}: ${detail || res.statusText}`);
  }
  return body;
}

async function loadList() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if (state.q) params.set("q", state.q);
  const list = $("docs");
  try {
    const page = await getJSON(`/documents?${params}`);
    state.total = page.total;
    list.replaceChildren(...page.items.map((d) => el("li", {},
      el("a", { href: `#${encodeURIComponent(d.id)}`, dataset: { id: d.id },
                class: d.id === state.selected ? "selected" : "" },
        d.title || d.id, el("span", { class: "id" }, d.id)))));
    if (!page.items.length) list.replaceChildren(el("li", { class: "empty" }, "No posts found."));
    const pages = Math.max(1, Math.ceil(page.total / PAGE));
    $("page").textContent = `${Math.floor(state.offset / PAGE) + 1} / ${pages}`;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + PAGE >= page.total;
    $("count").textContent = `${page.total.toLocaleString()} posts${state.q ? " match" : ""}`;
  } catch (err) {
    list.replaceChildren(el("li", { class: "error" }, `Could not load posts (${err.message}).`));
  }
}

function markSelected() {
  for (const a of document.querySelectorAll("#docs a")) {
    a.classList.toggle("selected", a.dataset.id === state.selected);
  }
}

async function showDocument(id) {
  state.selected = id;
  markSelected();
  const clicked = state.clicked && state.clicked.id === id ? state.clicked : null;
  state.clicked = null;
  logEvents([
    ...(clicked ? [{ item: id, kind: "click", source: clicked.source }] : []),
    { item: id, kind: "view" },
  ]);
  const docBox = $("doc");
  const related = $("related");
  related.replaceChildren(el("li", { class: "empty" }, "Loading…"));
  try {
    const [doc, sim] = await Promise.all([
      getJSON(`/documents/${encodeURIComponent(id)}`),
      getJSON(`/documents/${encodeURIComponent(id)}/similar?k=10`),
    ]);
    if (state.selected !== id) return; // another post was chosen meanwhile
    docBox.replaceChildren(
      el("h2", {}, doc.title || doc.id),
      el("p", { class: "id" }, doc.id),
      el("div", { class: "text" }, doc.text));
    related.replaceChildren(...sim.results.map((m) => {
      const pct = Math.max(0, Math.round(m.score * 100));
      const bar = el("span", { class: "bar", title: `score ${m.score.toFixed(3)}` }, el("span"));
      bar.firstChild.style.width = `${pct}%`;
      return el("li", { class: "rel", dataset: { id: m.id } },
        el("a", { href: `#${encodeURIComponent(m.id)}`, dataset: { id: m.id } }, m.title || m.id),
        el("div", { class: "meta" }, bar,
          el("span", { class: "score" }, `score ${m.score.toFixed(3)}`),
          el("span", {}, `· ${m.distance} bits apart`)),
        el("div", { class: "terms" }, ...m.shared_terms.map((t) => el("span", { class: "term" }, t))));
    }));
    if (!sim.results.length) related.replaceChildren(el("li", { class: "empty" }, "No related posts."));
    if (window.matchMedia("(max-width: 600px)").matches) docBox.scrollIntoView({ behavior: "smooth" });
  } catch (err) {
    docBox.replaceChildren(el("p", { class: "error" }, `Could not load ${id} (${err.message}).`));
    related.replaceChildren();
  }
}

function fromHash() {
  let id = location.hash.slice(1);
  try {
    id = decodeURIComponent(id);
  } catch (err) {
    // A malformed escape ("#%E0%A4%A"): look the id up as written; no document has it.
  }
  if (id && id !== state.selected) showDocument(id);
}

function init() {
  let timer = null;
  $("q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = $("q").value.trim(); state.offset = 0; loadList(); }, 250);
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    state.q = $("q").value.trim(); state.offset = 0; loadList();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadList(); });
  $("related").addEventListener("click", (e) => {
    const link = e.target.closest("a[data-id]");
    if (link) state.clicked = { id: link.dataset.id, source: "related" };
  });
  $("tracking").textContent = tracking
    ? "This page records which posts you open, under an anonymous id kept in this browser, "
      + "to learn which posts readers read together. "
    : "Your browser asks not to be tracked: this page records nothing.";
  if (tracking) {
    const forget = el("button", { type: "button", id: "forget" }, "Forget what I read");
    forget.addEventListener("click", async () => {
      forget.disabled = true;
      $("tracking").append(el("span", { id: "forgotten" }, " ", await forgetMe()));
    });
    $("tracking").append(forget);
  }
  window.addEventListener("hashchange", fromHash);
  loadList();
  fromHash();
}

init();
