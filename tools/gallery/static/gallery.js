// The anime-chat gallery: a little vanilla JS over the JSON API (no framework, no CDN).
"use strict";

const PAGE = document.body.dataset.page;
const DATA = JSON.parse(document.getElementById("page-data").textContent);
const PAGE_SIZE = 60;

// When the studio is gone (it stopped after its idle time, or restarted with a new login), say
// so once, in the page, instead of failing silently or alerting raw errors.
function showStopped(text) {
  let notice = document.getElementById("stopped");
  if (!notice) {
    notice = element("p", { id: "stopped", role: "alert" });
    document.body.prepend(notice);
  }
  notice.textContent = text;
}

const STOPPED = "The studio stopped — run `anime-gen gallery` again.";
const LOGGED_OUT = "The studio restarted and this page's login has expired — run `anime-gen gallery` again.";

async function api(method, url, body, extraHeaders = {}) {
  const headers = { "Content-Type": "application/json", ...extraHeaders };
  if (method !== "GET") headers[DATA.csrf_header] = DATA.csrf;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    showStopped(STOPPED);
    throw error;
  }
  const answer = await response.json().catch(() => null);
  if (response.status === 401) {
    showStopped(LOGGED_OUT);
    throw new Error("logged out");
  }
  if (!response.ok) {
    const message = (answer && (answer.error || answer.detail)) || response.statusText;
    alert(`${response.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
    throw new Error(String(message));
  }
  document.getElementById("stopped")?.remove();
  return answer;
}

// Polling keeps the server awake, so pages poll fast only while a job is queued or running.
// Otherwise they look every IDLE_SECONDS with the background header (which the server does not
// count as activity), when the tab comes back into view, and when another tab starts a job.
const IDLE_SECONDS = 10;
const BUSY = new BroadcastChannel("anime-gallery-jobs");

function jobsLive(jobs) {
  return jobs.some((job) => ["queued", "running"].includes(job.state));
}

function whileJobsRun(tick, busySeconds) {
  let timer = null;
  let checking = false;
  async function check(background) {
    if (checking) return;
    checking = true;
    clearTimeout(timer);
    let live = false;
    try {
      const quiet = background ? { "X-Anime-Background": "1" } : {};
      const jobs = await api("GET", "/api/jobs?limit=20", undefined, quiet);
      live = jobsLive(jobs);
      if (live || !background) await tick();
    } catch {
      return; // the studio is gone: the notice says so; a focus or a new job looks again
    } finally {
      checking = false;
    }
    timer = setTimeout(() => check(!live), (live ? busySeconds : IDLE_SECONDS) * 1000);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) check(false);
  });
  window.addEventListener("focus", () => check(false));
  BUSY.addEventListener("message", () => check(false));
  check(false);
}

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// -- the grid (images, rejected, trash) ----------------------------------------------------------
function filterQuery() {
  const params = new URLSearchParams(DATA.fixed || {});
  const form = document.getElementById("filters");
  if (form) {
    for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
  }
  return params;
}

function card(image) {
  const link = `/gallery/image/${image.id}?${filterQuery()}`;
  const picture = image.missing
    ? element("div", { class: "missing", text: "file missing" })
    : element("img", { src: `/api/images/${image.id}/thumb`, alt: `image ${image.id}`, loading: "lazy" });
  const caption = element("figcaption", {}, [
    element("span", { class: "star", text: image.starred ? "★" : "" }),
    `${image.character} · ${image.posture} · ${image.seed}`,
  ]);
  const figure = element("figure", { class: "card", "data-id": image.id }, [
    element("a", { href: link }, [picture]),
    caption,
  ]);
  if (PAGE !== "trash") {
    figure.prepend(element("input", { type: "checkbox", class: "select", "aria-label": `select image ${image.id}` }));
  }
  if (PAGE === "rejected") {
    figure.append(element("p", { class: "reasons", text: image.reasons.join("; ") || "no reason recorded" }));
    figure.append(element("button", { class: "keep", text: "Keep anyway", onclick: async () => {
      await api("POST", `/api/images/${image.id}/keep`, {});
      figure.remove();
    } }));
  }
  if (PAGE === "trash") {
    figure.append(element("button", { class: "restore", text: "Restore", onclick: async () => {
      await api("POST", `/api/images/${image.id}/restore`, {});
      figure.remove();
    } }));
  }
  return figure;
}

function startGrid() {
  const grid = document.getElementById("grid");
  const sentinel = document.getElementById("sentinel");
  const empty = document.getElementById("empty");
  let cursor = null;
  let finished = false;
  let loading = false;
  let generation = 0;

  async function more() {
    if (loading || finished) return;
    loading = true;
    const mine = generation;
    const params = filterQuery();
    params.set("limit", PAGE_SIZE);
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await api("GET", `/api/images?${params}`);
      if (mine !== generation) return;
      for (const image of page.images) grid.append(card(image));
      cursor = page.next;
      finished = page.next === null;
      empty.hidden = grid.children.length > 0;
    } finally {
      loading = false;
    }
    if (!finished && sentinel.getBoundingClientRect().top < window.innerHeight + 400) more();
  }

  function reset() {
    generation += 1;
    grid.replaceChildren();
    cursor = null;
    finished = false;
    loading = false;
    history.replaceState(null, "", `?${filterQuery()}`);
    more();
  }

  // New images (a job from the image view, another client) appear at the top without a reload.
  async function newer() {
    if (loading || (cursor === null && !finished)) return; // the first page is still arriving
    const mine = generation;
    const first = grid.querySelector(".card");
    const params = filterQuery();
    params.set("limit", PAGE_SIZE);
    const page = await api("GET", `/api/images?${params}`);
    if (mine !== generation) return; // the filters changed meanwhile
    const top = first ? Number(first.dataset.id) : 0;
    const fresh = page.images.filter((image) => Number(image.id) > top);
    for (const image of fresh.reverse()) grid.prepend(card(image));
    if (fresh.length) empty.hidden = true;
  }

  startSelection(grid);
  const form = document.getElementById("filters");
  if (form) {
    let typing = null;
    form.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(reset, 200);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      reset();
    });
  }
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) more();
  }).observe(sentinel);
  more();
  if (PAGE === "grid") whileJobsRun(newer, 2);
  const emptyTrash = document.getElementById("empty-trash");
  if (emptyTrash) {
    emptyTrash.addEventListener("click", async () => {
      if (!confirm("Delete every image in the trash for good?")) return;
      const answer = await api("POST", "/api/gallery/empty-trash", {});
      alert(`${answer.deleted} images deleted`);
      reset();
    });
  }
}

// Bulk actions: tick thumbnails (shift-click ticks the range from the last one), then act.
function startSelection(grid) {
  const bar = document.getElementById("bulk");
  if (!bar) return;
  const count = document.getElementById("selected-count");
  let last = null;
  const boxes = () => [...grid.querySelectorAll("input.select")];
  const chosen = () => boxes().filter((box) => box.checked);
  const show = () => {
    const ticked = chosen().length;
    bar.hidden = ticked === 0;
    count.textContent = `${ticked} selected`;
  };
  grid.addEventListener("click", (event) => {
    const box = event.target.closest("input.select");
    if (!box) return;
    const all = boxes();
    if (event.shiftKey && last && all.includes(last)) {
      const [from, to] = [all.indexOf(last), all.indexOf(box)].sort((a, b) => a - b);
      for (const other of all.slice(from, to + 1)) other.checked = box.checked;
    }
    last = box;
    show();
  });
  document.getElementById("clear-selection").addEventListener("click", () => {
    for (const box of chosen()) box.checked = false;
    show();
  });
  for (const button of bar.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      const body = { action, ids: chosen().map((box) => box.closest(".card").dataset.id) };
      if (action === "collection") {
        const name = prompt("Collection name (the images stay where they are):", "");
        if (name === null) return;
        body.collection = name.trim() || null;
      }
      const answer = await api("POST", "/api/gallery/bulk", body);
      for (const image of answer.images) {
        const figure = grid.querySelector(`.card[data-id="${image.id}"]`);
        if (!figure) continue;
        if (image.trashed) figure.remove();
        else {
          figure.querySelector(".star").textContent = image.starred ? "★" : "";
          figure.querySelector("input.select").checked = false;
        }
      }
      show();
    });
  }
}

// -- one image -------------------------------------------------------------------------------
function followJob(job) {
  const box = document.getElementById("job");
  const line = document.getElementById("job-progress");
  const strip = document.getElementById("job-images");
  box.hidden = false;
  line.textContent = `job ${job}: queued`;
  BUSY.postMessage(job); // an open grid tab starts following new images
  const events = new EventSource(`/api/jobs/${job}/events`);
  events.addEventListener("progress", (event) => {
    const data = JSON.parse(event.data);
    const step = data.step ? `, step ${data.step}/${data.steps}` : "";
    line.textContent = `job ${job}: ${data.state}, ${data.done}/${data.images} images${step}`;
  });
  events.addEventListener("image", (event) => {
    const { record } = JSON.parse(event.data);
    strip.append(element("span", { class: "new-image", text: record.path.split("/").pop() }));
  });
  events.addEventListener("end", async (event) => {
    events.close();
    const data = JSON.parse(event.data);
    line.textContent = `job ${job}: ${data.state}`;
    if (data.error) line.textContent += ` (${data.error})`;
    // The finished images as the gallery lists them (newest first), linked to their views.
    const page = await api("GET", `/api/images?character=${encodeURIComponent(DATA.image.character)}&limit=100`);
    const paths = new Set(data.records.map((record) => record.path));
    strip.replaceChildren();
    for (const image of page.images.filter((found) => paths.has(found.path))) {
      strip.append(element("a", { href: `/gallery/image/${image.id}`, class: "new-image" }, [
        element("img", { src: `/api/images/${image.id}/thumb`, alt: `new image ${image.id}` }),
      ]));
    }
  });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) line.textContent += " (connection lost)";
  };
}

function startImage() {
  const image = DATA.image;
  const base = `/api/images/${image.id}`;
  const on = (id, handler) => {
    const button = document.getElementById(id);
    if (button) button.addEventListener("click", handler);
  };
  on("star", async (event) => {
    const button = event.currentTarget; // currentTarget is gone once the handler awaits
    const pressed = button.getAttribute("aria-pressed") === "true";
    const answer = await api("POST", `${base}/star`, { starred: !pressed });
    button.setAttribute("aria-pressed", String(answer.starred));
    button.textContent = answer.starred ? "★ starred" : "☆ star";
  });
  on("trash", async () => {
    await api("POST", `${base}/trash`, {});
    location.reload();
  });
  on("restore", async () => {
    await api("POST", `${base}/restore`, {});
    location.reload();
  });
  on("keep", async () => {
    await api("POST", `${base}/keep`, {});
    location.reload();
  });
  on("collect", async () => {
    const name = prompt("Collection name (the image stays where it is):", image.collection || "");
    if (name === null) return;
    await api("POST", `${base}/collection`, { collection: name.trim() || null });
    location.reload();
  });
  on("again", async () => followJob((await api("POST", `${base}/rerun`, {})).job));
  on("variations", async () => {
    const count = Number(prompt("How many variations (new seeds, same pose)?", "4"));
    if (!count) return;
    followJob((await api("POST", `${base}/rerun`, { count, seed: null })).job);
  });
  on("same-but", async () => {
    const text = prompt("Same image, but with this prompt:", image.user_prompt);
    if (text === null) return;
    followJob((await api("POST", `${base}/rerun`, { prompt: text })).job);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea")) return;
    const target = { ArrowLeft: "newer", ArrowRight: "older" }[event.key];
    const link = target && document.getElementById(target);
    if (link) location.href = link.href;
  });
}

// -- the job queue ---------------------------------------------------------------------------
// The list is read once, then each unfinished job's row follows the server's event stream
// (`/api/jobs/{id}/events`); the list is read again when a stream ends, after cancel or retry,
// and every LIST_SECONDS for jobs queued elsewhere. Streams are capped: a browser opens only
// a few connections to one host, and the page's own requests need one.
const MAX_STREAMS = 3;
const LIST_SECONDS = 10;

function startJobs() {
  const body = document.querySelector("#jobs tbody");
  const streams = new Map();

  function stateText(state, error) {
    return state + (error ? `: ${error}` : "");
  }

  function row(job) {
    const actions = element("td", { class: "job-actions" });
    if (["queued", "running"].includes(job.state)) {
      actions.append(element("button", { class: "cancel", text: "Cancel", onclick: async () => {
        await api("POST", `/api/jobs/${job.id}/cancel`, {});
        refresh();
      } }));
    } else if (job.state !== "done") {
      actions.append(element("button", { class: "retry", text: "Retry", onclick: async () => {
        await api("POST", `/api/jobs/${job.id}/retry`, {});
        refresh();
      } }));
    }
    const bar = element("progress", { max: job.images_total || 1, value: job.images_done });
    return element("tr", { "data-job": job.id, "data-state": job.state }, [
      element("td", { text: job.id }),
      element("td", { class: "job-what", text: job.label ? `${job.label}: ${job.what}` : job.what }),
      element("td", { class: "job-queued", text: new Date(job.queued).toLocaleString() }),
      element("td", { class: "job-state", text: stateText(job.state, job.error) }),
      element("td", { class: "job-progress" }, [bar, element("span", { text: ` ${job.images_done}/${job.images_total}` })]),
      actions,
    ]);
  }

  function follow(id) {
    const events = new EventSource(`/api/jobs/${id}/events`);
    streams.set(id, events);
    events.addEventListener("progress", (event) => {
      const data = JSON.parse(event.data);
      const line = body.querySelector(`tr[data-job="${id}"]`);
      if (!line) return;
      const step = data.step ? `, step ${data.step}/${data.steps}` : "";
      line.querySelector(".job-state").textContent = data.state + step;
      line.querySelector("progress").max = data.images || 1;
      line.querySelector("progress").value = data.done;
      line.querySelector(".job-progress span").textContent = ` ${data.done}/${data.images}`;
    });
    events.addEventListener("end", () => {
      events.close();
      streams.delete(id);
      refresh();
    });
  }

  async function refresh() {
    const jobs = await api("GET", "/api/jobs?limit=100");
    body.replaceChildren(...jobs.map(row));
    const live = new Set(jobs.filter((job) => ["queued", "running"].includes(job.state)).map((job) => job.id));
    for (const [id, events] of streams) {
      if (!live.has(id)) {
        events.close();
        streams.delete(id);
      }
    }
    for (const id of live) if (!streams.has(id) && streams.size < MAX_STREAMS) follow(id);
  }
  whileJobsRun(refresh, LIST_SECONDS);
}

document.getElementById("rescan").addEventListener("click", async () => {
  const report = await api("POST", "/api/gallery/reconcile", {});
  alert(`added ${report.added}, moved ${report.moved}, missing ${report.missing}`);
  location.reload();
});

if (["grid", "rejected", "trash"].includes(PAGE)) startGrid();
if (PAGE === "image") startImage();
if (PAGE === "jobs") startJobs();
