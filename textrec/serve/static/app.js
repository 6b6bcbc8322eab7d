// textrec page: the post list (paged, searchable), the chosen post, its related posts, what
// its readers also read, and a "For you" list from this reader's own history.
// It logs a view when a post is opened and a click when a suggested post is chosen, under an
// anonymous id kept in this browser, unless the browser asks not to be tracked; then it has
// no reader id at all, and so no "For you" list.
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

// Resolves once the server has answered (or the events were lost): the reader's list is
// fetched again after that, so that it reflects the post just opened.
function logEvents(events) {
  if (!tracking || !events.length) return Promise.resolve();
  return reader().then(({ id }) => fetch("/events", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ events: events.map((e) => ({ user: id, ...e })) }),
    keepalive: true,
  })).then(() => {}, () => {}); // a lost event is not the reader's problem
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

// Words a reader understands for the sources the server names.
const SOURCE_WORDS = {
  related: "similar to what you read",
  readers: "read by the same readers",
  als: "readers with your taste",
  bpr: "readers with your taste (BPR)",
  popular: "popular",
};

function scoreBar(score, max) {
  const pct = max > 0 ? Math.max(0, Math.round((score / max) * 100)) : 0;
  const bar = el("span", { class: "bar", title: `score ${score.toFixed(3)}` }, el("span"));
  bar.firstChild.style.width = `${pct}%`;
  return bar;
}

function terms(list) {
  return el("div", { class: "terms" }, ...list.map((t) => el("span", { class: "term" }, t)));
}

function readersText(n) {
  if (n === 0) return "no readers yet";
  return n === 1 ? "1 reader" : `${n.toLocaleString()} readers`;
}

// Titles of posts named by id ("because you read …"), fetched once each.
const titles = new Map();
function titleOf(id) {
  if (!titles.has(id)) {
    titles.set(id, getJSON(`/documents/${encodeURIComponent(id)}`)
      .then((d) => d.title || d.id, () => id));
  }
  return titles.get(id);
}

// One suggested post of a list: its link, a bar of its score against the list's top (max),
// what the score means (label) and one more detail, then anything more.
function postItem(m, max, label, detail, ...more) {
  return el("li", { class: "rel", dataset: { id: m.id } },
    el("a", { href: `#${encodeURIComponent(m.id)}`, dataset: { id: m.id } }, m.title || m.id),
    el("div", { class: "meta" }, scoreBar(m.score, max),
      el("span", { class: "score" }, label),
      el("span", {}, detail)),
    ...more);
}

function renderRelated(sim) {
  const related = $("related");
  related.replaceChildren(...sim.results.map((m) => postItem(m, 1, `score ${m.score.toFixed(3)}`,
    `· ${m.distance} bits apart`, terms(m.shared_terms))));
  if (!sim.results.length) related.replaceChildren(el("li", { class: "empty" }, "No related posts."));
}

function renderReaders(sim) {
  const list = $("readers");
  const note = $("readers-note");
  note.className = "hint";
  if (sim.note) {
    note.textContent = "Nobody has read this post yet, so there is nothing to show here. "
      + "Posts appear once readers open it and other posts too.";
    note.classList.add("note");
    list.replaceChildren();
    return;
  }
  if (!sim.results.length) {
    note.textContent = "The readers of this post have not read other posts yet.";
    list.replaceChildren();
    return;
  }
  note.textContent = "Posts that the readers of this one read too, most read together first.";
  const max = Math.max(...sim.results.map((m) => m.score));
  list.replaceChildren(...sim.results.map((m) => postItem(m, max,
    `read together, score ${m.score.toFixed(3)}`, `· ${readersText(m.readers)}`)));
}

// "For you": the reader's own list, with why each post is there. Without a reader id (Do Not
// Track) nothing is asked for: the server would need an id to answer.
let forYouAsked = 0;
async function loadForYou(contextId) {
  if (!tracking) return;
  const ask = ++forYouAsked;
  const list = $("foryou");
  const basis = $("foryou-basis");
  try {
    const { id, key } = await reader();
    const params = new URLSearchParams({ k: 10 });
    if (contextId) params.set("context_id", contextId);
    const answer = await getJSON(
      `/users/${encodeURIComponent(id)}/recommendations?${params}`,
      { headers: key ? { "X-Reader-Key": key } : {} });
    if (ask !== forYouAsked) return; // a newer list was asked for meanwhile
    list.dataset.basis = answer.basis;
    if (answer.basis === "history") {
      basis.textContent = "Picked from the posts you read here.";
    } else if (answer.basis === "context") {
      basis.textContent = "You have no reading history here yet: "
        + "these are like the post you are reading now.";
    } else {
      basis.textContent = "Popular now. You have no reading history here yet: "
        + "open a post and this list follows what you read.";
    }
    const items = await Promise.all(answer.results.map(async (r) => {
      const because = await Promise.all(r.because.map(titleOf));
      return el("li", { class: "rec", dataset: { id: r.id, sources: r.sources.join(" ") } },
        el("a", { href: `#${encodeURIComponent(r.id)}`, dataset: { id: r.id } }, r.title || r.id),
        el("div", { class: "sources" }, ...r.sources.map((s) =>
          el("span", { class: "src", dataset: { source: s }, title: s }, SOURCE_WORDS[s] || s))),
        ...(because.length
          ? [el("p", { class: "because" }, `Because you read ${because.map((t) => `“${t}”`).join(", ")}`)]
          : []),
        el("div", { class: "meta" },
          el("span", { class: "readers-count" }, readersText(r.readers))),
        terms(r.shared_terms));
    }));
    if (ask !== forYouAsked) return;
    list.replaceChildren(...items);
    if (!items.length) {
      list.replaceChildren(el("li", { class: "empty" },
        "Nothing to suggest yet: nobody has read anything here."));
    }
  } catch (err) {
    if (ask !== forYouAsked) return;
    basis.textContent = "";
    list.replaceChildren(el("li", { class: "error" }, `Could not load your list (${err.message}).`));
  }
}

async function showDocument(id) {
  state.selected = id;
  markSelected();
  const clicked = state.clicked && state.clicked.id === id ? state.clicked : null;
  state.clicked = null;
  const docBox = $("doc");
  const related = $("related");
  related.replaceChildren(el("li", { class: "empty" }, "Loading…"));
  $("readers").replaceChildren();
  $("readers-note").className = "hint";
  $("readers-note").textContent = "Loading…";
  const path = `/documents/${encodeURIComponent(id)}`;
  const docAsked = getJSON(path);
  const simAsked = getJSON(`${path}/similar?k=10`);
  const readersAsked = getJSON(`${path}/similar?mode=readers&k=5`);
  // The view is logged once the post and its lists have been answered, whether or not another
  // post was chosen meanwhile: "Readers also read" then shows what the other readers read, not
  // this reader's own visit. The reader's list follows once the view is stored, with this
  // post as the context (which counts only while the reader has no history).
  const logged = Promise.allSettled([docAsked, simAsked, readersAsked]).then(() => logEvents([
    ...(clicked ? [{ item: id, kind: "click", source: clicked.source }] : []),
    { item: id, kind: "view" },
  ]));
  const refresh = (context) => logged.then(() => { if (state.selected === id) loadForYou(context); });
  try {
    const [doc, sim] = await Promise.all([docAsked, simAsked]);
    if (state.selected !== id) return; // another post was chosen meanwhile
    docBox.replaceChildren(
      el("h2", {}, doc.title || doc.id),
      el("p", { class: "id" }, doc.id),
      el("div", { class: "text" }, doc.text));
    renderRelated(sim);
    refresh(id);
    if (window.matchMedia("(max-width: 600px)").matches) docBox.scrollIntoView({ behavior: "smooth" });
  } catch (err) {
    if (state.selected !== id) return;
    docBox.replaceChildren(el("p", { class: "error" }, `Could not load ${id} (${err.message}).`));
    related.replaceChildren();
    $("readers-note").textContent = "";
    refresh(null); // no such post: no context either
    return;
  }
  try {
    const sim = await readersAsked;
    if (state.selected === id) renderReaders(sim);
  } catch (err) {
    if (state.selected !== id) return;
    $("readers-note").textContent = `Could not load what readers also read (${err.message}).`;
    $("readers-note").className = "error";
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
  // A click on a suggested post is logged with the list it came from.
  for (const [list, source] of [["related", "related"], ["readers", "readers"], ["foryou", "for-you"]]) {
    $(list).addEventListener("click", (e) => {
      const link = e.target.closest("a[data-id]");
      if (link) state.clicked = { id: link.dataset.id, source };
    });
  }
  $("tracking").textContent = tracking
    ? "This page records which posts you open, under an anonymous id kept in this browser, "
      + "to learn which posts readers read together. "
    : "Your browser asks not to be tracked: this page records nothing, and keeps no reader id.";
  if (!tracking) {
    $("foryou-basis").textContent = "Your browser asks not to be tracked, so this page keeps "
      + "no reading history and shows no “For you” list.";
  }
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
  const hadHash = location.hash.length > 1;
  fromHash();
  if (!hadHash) loadForYou(null); // else opening the post loads it, with the post as context
}

init();
