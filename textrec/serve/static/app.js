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

function readerId() {
  const key = "textrec-reader";
  let id = localStorage.getItem(key);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = "anon-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(key, id);
  }
  return id;
}

function logEvents(events) {
  if (!tracking || !events.length) return;
  const user = readerId();
  fetch("/events", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ events: events.map((e) => ({ user, ...e })) }),
    keepalive: true,
  }).catch(() => {}); // a lost event is not the reader's problem
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
      + "to learn which posts readers read together."
    : "Your browser asks not to be tracked: this page records nothing.";
  window.addEventListener("hashchange", fromHash);
  loadList();
  fromHash();
}

init();
