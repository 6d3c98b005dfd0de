"use strict";
// sangsaeng's dashboard: one page, views by the URL's fragment (#/,
// #/channel/ID, #/record/CID, #/orders, #/import). Its session is the
// cookie the /login link set and the key that link's redirect gave in the
// fragment, kept in localStorage (this origin's alone) and sent with every
// request. Every text from the node goes into the page as text, never as
// markup.

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("sangsaeng-lang") === "en" ? "en" : "ko";
let key = localStorage.getItem("sangsaeng-key") || "";
// withKey adds the session key to the URL of a GET the page cannot add a
// header to (EventSource, a download link).
const withKey = (u) => u + (u.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(key);
let stream = null; // the EventSource of the channel view
const names = {}; // peer ID → company name

function t(key, ...args) {
  const s = (I18N[lang] && I18N[lang][key]) || I18N.ko[key] || key;
  return s.replace(/\{(\d)\}/g, (_, i) => String(args[+i] ?? ""));
}
const locale = () => (lang === "ko" ? "ko-KR" : "en-GB");
// num formats a number, or a decimal string exactly (Intl formats the
// string's digits, not a float's).
function num(v) {
  if (v === undefined || v === null || v === "") return "";
  if (typeof v === "string" && !/^-?\d+(\.\d+)?$/.test(v)) return v;
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 20 }).format(v);
}
// when formats a time in the chosen locale, in the browser's time zone;
// with ownZone, in the offset the text gives (a document's 09:00+09:00
// stays 09:00), where the browser knows offset time zones.
function when(v, ownZone) {
  if (!v) return "";
  const d = new Date(v);
  if (isNaN(d)) return String(v);
  const opts = { dateStyle: "medium", timeStyle: "medium" };
  const z = ownZone && String(v).match(/(Z|[+-]\d{2}:\d{2})$/);
  if (z) {
    try { return new Intl.DateTimeFormat(locale(), { ...opts, timeZone: z[1] === "Z" ? "UTC" : z[1] }).format(d); } catch (_) { /* an older browser: its own zone */ }
  }
  return new Intl.DateTimeFormat(locale(), opts).format(d);
}
function day(v) {
  if (!v) return "";
  const d = new Date(v.length === 10 ? v + "T00:00:00" : v);
  return isNaN(d) ? String(v) : new Intl.DateTimeFormat(locale(), { dateStyle: "medium" }).format(d);
}
const short = (s) => (s && s.length > 18 ? s.slice(0, 8) + "…" + s.slice(-6) : s || "");
const who = (id) => (names[id] ? names[id] + " " : "") + short(id);

// el builds an element: el("a", {href: "#/"}, "text", child, …).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== undefined && k !== null) e.append(k instanceof Node ? k : String(k));
  return e;
}
function table(heads, rows, opts = {}) {
  return el("div", { class: "scroll" }, el("table", opts,
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { class: h.cls }, h.label ?? h)))),
    el("tbody", { id: opts.bodyId }, rows)));
}
const td = (v, cls) => el("td", { class: cls }, v);

class APIError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}
async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  headers["X-Session-Key"] = key;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body, credentials: "same-origin" });
  if (r.status === 401) { signIn(); throw new APIError(401, t("signin.title")); }
  if (!r.ok) {
    const e = await r.json().catch(() => ({ message: r.statusText }));
    throw new APIError(r.status, e.message || r.statusText);
  }
  if (r.status === 204) return null;
  return opts.raw ? r.blob() : r.json();
}
function showError(e) { $("error").textContent = e ? (e.message || String(e)) : ""; }

function signIn() {
  if (stream) { stream.close(); stream = null; }
  $("logout").hidden = true;
  view(el("h1", {}, t("signin.title")), el("p", {}, ...t("signin.how", "\u0000").split("\u0000").flatMap((s, i) => (i ? [el("code", {}, "sangsaeng dashboard"), s] : [s]))));
}

// put replaces e's children with nodes, leaving out null and undefined
// (replaceChildren would show them as text).
function put(e, ...nodes) {
  e.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}
function view(...nodes) { put($("view"), ...nodes); }
function translateStatic() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-t]")) e.textContent = t(e.dataset.t);
  $("lang").textContent = t("lang.switch");
  $("lang").lang = lang === "ko" ? "en" : "ko"; // the button names the other language
  const route = location.hash.split("/")[1] || "";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("here", a.getAttribute("href") === "#/" + route);
}

// ---- views -----------------------------------------------------------

// syncState is a channel's state of sync as lines of [text, class]: the
// records it is catching up, each partner offline (since when) or whose
// last sync failed; "in sync" only when every partner is online and
// caught up.
function syncState(ch) {
  const others = ch.partners || [];
  if (others.length === 0) return [[t("sync.alone"), "muted"]];
  const out = [];
  if (ch.lag > 0) out.push([t("sync.behind", num(ch.lag)), "warn"]);
  for (const p of others) {
    if (p.name) names[p.id] = p.name;
    if (!p.online) out.push([p.offlineSince ? t("sync.offlineSince", who(p.id), when(p.offlineSince)) : t("sync.offline", who(p.id)), "warn"]);
    else if (p.error) out.push([t("sync.error", who(p.id), p.error), "bad"]);
  }
  if (out.length === 0) out.push([t("sync.ok"), "ok"]);
  return out;
}

// rejectedCounts reads the node's counters of refused records, by rule,
// from its Prometheus metrics.
async function rejectedCounts() {
  const r = await fetch("/metrics", { credentials: "same-origin", headers: { "X-Session-Key": key } });
  if (!r.ok) return {};
  const out = {};
  for (const line of (await r.text()).split("\n")) {
    const m = line.match(/^sangsaeng_records_rejected_total\{[^}]*reason="([^"]*)"[^}]*\} (\S+)$/);
    if (m && Number(m[2]) > 0) out[m[1]] = Number(m[2]);
  }
  return out;
}

async function overview() {
  const [st, chans, rejected] = await Promise.all([api("/v1/status"), api("/v1/channels"), rejectedCounts().catch(() => ({}))]);
  for (const p of [...st.peers.connected, ...st.peers.offline]) if (p.name) names[p.id] = p.name;
  $("me").textContent = (st.name || "") + " " + short(st.id);
  const reach = st.reachability || { state: "unknown", relays: [] };
  const alerts = [];
  for (const p of st.problems || []) alerts.push(el("li", { class: "bad" }, t("alert.problem", p)));
  if (st.store.errors > 0) alerts.push(el("li", { class: "bad" }, t("alert.storeErrors", num(st.store.errors))));
  for (const c of chans) {
    if ((c.forks || []).length) alerts.push(el("li", { class: "bad" }, t("alert.fork", c.name, num(c.forks.length))));
    for (const f of c.flagged || []) alerts.push(el("li", { class: "warn" }, t("alert.flagged", c.name, who(f))));
  }
  for (const [rule, n] of Object.entries(rejected)) alerts.push(el("li", { class: "warn" }, t("alert.rejected", num(n), rule)));
  for (const e of st.recentErrors || []) alerts.push(el("li", { class: "bad" }, when(e.time) + " " + e.op + ": " + e.message));
  const partnerList = (list, cls) => list.length ? el("ul", {}, list.map((p) => el("li", { class: cls }, who(p.id)))) : el("p", { class: "muted" }, t("none"));
  view(
    el("h1", {}, t("nav.overview")),
    el("div", { class: "cards" },
      el("section", { class: "card", "aria-labelledby": "h-node" }, el("h2", { id: "h-node" }, t("node")),
        el("div", { class: "big" }, st.name || "—"),
        el("p", { class: "mono" }, st.id),
        el("p", {}, el("span", { class: st.healthy ? "ok" : "bad" }, st.healthy ? t("healthy") : t("unhealthy")),
          " · " + t("version") + " " + st.version + " · " + t("store") + " " + num(st.store.records) + " " + t("records")),
        el("p", {}, t("reach") + ": ", el("strong", {}, t("reach." + reach.state))),
        (reach.relays || []).map((r) => el("p", { class: "muted" }, t("relays") + ": " + who(r.id) + " — " + (r.reserved ? t("relay.slot", when(r.expires)) : t("relay.none"))))),
      el("section", { class: "card", "aria-labelledby": "h-partners" }, el("h2", { id: "h-partners" }, t("partners")),
        el("p", {}, el("span", { class: "big", id: "online-count" }, num(st.peers.connected.length)), " " + t("online") + " · " + num(st.peers.offline.length) + " " + t("offline")),
        partnerList(st.peers.connected, "ok"), st.peers.offline.length ? el("div", {}, el("p", { class: "muted" }, t("offline")), partnerList(st.peers.offline, "warn")) : null),
      el("section", { class: "card", "aria-labelledby": "h-alerts" }, el("h2", { id: "h-alerts" }, t("alerts")),
        alerts.length ? el("ul", { id: "alerts" }, alerts) : el("p", { class: "ok", id: "alerts" }, t("alerts.none")))),
    el("h2", {}, t("channels")),
    table([t("channel"), { label: t("members"), cls: "num" }, { label: t("ownHead"), cls: "num" }, t("sync")],
      st.channels.map((c) => el("tr", { "data-channel": c.id },
        td(el("a", { href: "#/channel/" + c.id }, c.name || short(c.id))), td(num(c.members), "num"), td(num(c.ownHead), "num"),
        td(syncState(c).map(([text, cls]) => el("div", { class: cls }, text))))), { id: "channels" }),
  );
}

function recordRow(r, fresh) {
  let doc = "";
  try { const b = typeof r.body === "string" ? JSON.parse(r.body) : r.body; doc = (b && (b.docId || b.lotId || b.text)) || ""; } catch (_) { /* a body without those */ }
  return el("tr", { class: fresh ? "new" : undefined, "data-cid": r.cid },
    td(when(r.time)), td(el("a", { href: "#/record/" + r.cid }, r.kind)), td(String(doc)), td(who(r.author)),
    td(el("a", { href: "#/record/" + r.cid, class: "mono" }, short(r.cid)), "hide-narrow"));
}

async function channelView(id) {
  // The stream opens first, so that nothing arriving while the list loads
  // is missed (rows are kept once, by CID).
  const pending = [];
  let body = null;
  const add = (r) => {
    if (!body) { pending.push(r); return; }
    if (body.querySelector(`tr[data-cid="${CSS.escape(r.cid)}"]`)) return;
    body.prepend(recordRow(r, true));
  };
  stream = new EventSource(withKey("/v1/events?channel=" + encodeURIComponent(id)));
  stream.addEventListener("record", (ev) => add(JSON.parse(ev.data)));
  const [ch, recs] = await Promise.all([api("/v1/channels/" + encodeURIComponent(id)), api("/v1/records?channel=" + encodeURIComponent(id) + "&limit=50")]);
  for (const m of ch.members || []) if (m.name) names[m.id] = m.name;
  const admins = new Set(ch.admins || []);
  const inviteOut = el("div", { id: "invite-out" });
  const peerInput = el("input", { type: "text", id: "invite-peer", size: 56, "aria-label": t("invite.peer"), placeholder: "12D3KooW…", required: true });
  const members = (ch.members || []).map((m) => {
    const id = typeof m === "string" ? m : m.id;
    return el("tr", {},
      td(who(id)), td(admins.has(id) ? t("admin") : t("member")), td(num((ch.heads || {})[id] || 0), "num"),
      td((ch.flagged || []).includes(id) ? t("flagged") : "", "flag"),
      td(admins.has(id) ? "" : el("button", { type: "button", class: "danger", "data-peer": id, onclick: () => removeMember(ch, id) }, t("remove"))));
  });
  const status = el("span", { class: "muted", id: "stream-state", role: "status", "aria-live": "polite" }, "");
  view(
    el("h1", {}, t("channel") + ": " + (ch.name || short(ch.id))),
    el("p", { class: "mono" }, ch.id),
    el("h2", {}, t("members")),
    table([t("name"), t("role"), { label: t("head"), cls: "num" }, "", ""], members, { id: "members" }),
    el("h2", {}, t("invite")),
    el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); invite(ch, peerInput.value.trim(), inviteOut); } },
      el("label", { for: "invite-peer" }, t("invite.peer")), peerInput, el("button", { type: "submit", id: "invite-do" }, t("invite.do"))),
    inviteOut,
    el("h2", {}, t("stream"), " ", status),
    table([t("time"), t("kind"), t("doc"), t("author"), { label: t("cid"), cls: "hide-narrow" }], recs.map((r) => recordRow(r, false)), { bodyId: "stream" }),
  );
  body = $("stream");
  pending.splice(0).forEach(add);
  const live = () => { status.textContent = "● " + t("stream.live"); status.className = "ok"; };
  if (stream.readyState === EventSource.OPEN) live();
  stream.addEventListener("open", live);
  stream.addEventListener("error", () => {
    if (stream && stream.readyState === EventSource.CLOSED) { signIn(); return; } // refused: the session ended
    status.textContent = t("stream.reconnecting"); status.className = "warn";
  });
}

async function invite(ch, peer, out) {
  showError();
  if (!peer) return;
  const inv = await api("/v1/channels/" + encodeURIComponent(ch.id) + "/invite", { method: "POST", json: { peer } }).catch(showError);
  if (!inv) return;
  put(out,
    el("p", {}, ...t("invite.code", "\u0000").split("\u0000").flatMap((s, i) => (i ? [el("code", {}, "sangsaeng channel join"), s] : [s]))),
    el("textarea", { class: "code", readonly: true, id: "invite-code", "aria-label": t("invite.code", "") }, inv.code),
    el("div", { id: "invite-qr" }, el("p", { class: "muted" }, t("loading"))));
  // The QR code comes as an image, or as the node's reason it will not
  // draw one (a code over its limit), which the view shows in its place.
  try {
    const png = await api("/v1/qr?text=" + encodeURIComponent(inv.code), { raw: true });
    put($("invite-qr"), el("img", { class: "qr", alt: t("invite.qr"), src: await dataURL(png) }));
  } catch (e) {
    put($("invite-qr"), el("p", { class: "bad", id: "qr-error" }, t("invite.qrRefused", e.message)));
  }
}

// dataURL reads a blob as a data: URL (the page's CSP allows data:
// images, not blob: ones).
function dataURL(blob) {
  return new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result);
    r.onerror = () => fail(r.error);
    r.readAsDataURL(blob);
  });
}

async function removeMember(ch, id) {
  if (!confirm(t("remove.confirm", who(id)))) return;
  showError();
  try {
    await api("/v1/channels/" + encodeURIComponent(ch.id) + "/remove-member", { method: "POST", json: { peer: id } });
  } catch (e) { showError(e); return; }
  route();
}

// fields renders a record body as a read-only form: names and values,
// nested objects and lists indented.
// Dates and times (ISO 8601, as the schemas write them) are shown in the
// chosen locale, the text as written in their title.
const isoDay = /^\d{4}-\d{2}-\d{2}$/;
const isoTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;
function fields(v) {
  if (typeof v === "string" && isoDay.test(v)) return el("time", { datetime: v, title: v }, day(v));
  if (typeof v === "string" && isoTime.test(v)) return el("time", { datetime: v, title: v }, when(v, true));
  if (v === null || typeof v !== "object") return document.createTextNode(typeof v === "number" ? num(v) : String(v));
  const dl = el("dl", { class: "fields" });
  for (const [k, x] of Object.entries(v)) dl.append(el("dt", {}, Array.isArray(v) ? "#" + (Number(k) + 1) : k), el("dd", {}, fields(x)));
  return dl;
}

async function recordView(c) {
  const r = await api("/v1/records/" + encodeURIComponent(c));
  const [check, back] = await Promise.all([api("/v1/verify/" + encodeURIComponent(c)).catch((e) => ({ ok: false, errors: [e.message] })), api("/v1/records/" + encodeURIComponent(c) + "/backlinks").catch(() => [])]);
  const body = typeof r.body === "string" ? JSON.parse(r.body) : r.body;
  view(
    el("h1", {}, t("record") + ": " + r.kind),
    el("p", { class: "mono" }, r.cid),
    el("p", { id: "check" }, t("check") + ": ", check.ok ? el("span", { class: "ok" }, "✔ " + t("check.ok")) : el("span", { class: "bad" }, "✘ " + t("check.bad") + ": " + (check.errors || []).join("; "))),
    el("dl", { class: "fields" },
      el("dt", {}, t("author")), el("dd", {}, who(r.author)),
      el("dt", {}, t("channel")), el("dd", {}, el("a", { href: "#/channel/" + r.channel, class: "mono" }, short(r.channel))),
      el("dt", {}, t("seq")), el("dd", {}, num(r.seq)),
      el("dt", {}, t("time")), el("dd", {}, el("time", { id: "rec-time", datetime: r.time, title: r.time }, when(r.time))),
      el("dt", {}, t("prev")), el("dd", {}, r.prev ? el("a", { href: "#/record/" + r.prev, class: "mono" }, short(r.prev)) : "—")),
    el("h2", {}, t("fields")), fields(body),
    el("h2", {}, t("links")),
    (r.links || []).length ? el("ul", {}, r.links.map((l) => el("li", {}, l.rel + " → ", el("a", { href: "#/record/" + l.cid, class: "mono" }, short(l.cid))))) : el("p", { class: "muted" }, t("none")),
    el("h2", {}, t("backlinks")),
    back.length ? el("ul", {}, back.map((b) => el("li", {}, (b.kind || "") + " " + b.rel + " ← ", el("a", { href: "#/record/" + b.cid, class: "mono" }, short(b.cid)), b.author ? " (" + who(b.author) + ")" : ""))) : el("p", { class: "muted" }, t("none")),
    el("h2", {}, t("download")),
    el("p", {}, el("a", { href: withKey("/v1/records/" + encodeURIComponent(c) + "?raw=1"), download: c + ".bin", id: "dl-env" }, t("download.env")), " · ",
      el("a", { href: withKey("/v1/channels/" + encodeURIComponent(r.channel) + "/export?format=car&cid=" + encodeURIComponent(c) + "&with_links=true"), download: c + ".car", id: "dl-car" }, t("download.car"))),
  );
}

// lineState is where an order line is in its lifecycle, as an i18n key
// (st.*) and a class.
function lineState(o, l) {
  if (l.status === "cancelled" || o.status === "cancelled") return ["st.cancelled", "muted"];
  if (l.status === "rejected" || o.status === "rejected") return ["st.rejected", "bad"];
  if (l.late) return ["st.late", "bad"];
  if (Number(l.open) === 0) return ["st.done", "ok"];
  if (Number(l.shipped) > 0) return ["st.partial", "warn"];
  if (l.status === "accepted" || l.status === "changed") return ["st.confirmed", ""];
  return ["st.open", ""];
}
const due = (l) => l.promised || l.requested || "";

// ordersView lists every order line with its own lifecycle, late lines
// first, then by due date.
async function ordersView() {
  const orders = await api("/v1/orders");
  const rows = [];
  for (const o of orders) for (const l of o.lines || []) rows.push({ o, l });
  const byNum = new Intl.Collator(undefined, { numeric: true }).compare;
  rows.sort((a, b) => (b.l.late - a.l.late) || ((due(a.l) || "~").localeCompare(due(b.l) || "~")) ||
    byNum(a.o.docId, b.o.docId) || byNum(a.l.lineId, b.l.lineId));
  const qty = (v, cls) => td(v === undefined || v === "" ? "—" : num(v), "num" + (cls ? " " + cls : ""));
  const heads = [t("order"), t("line"), t("part"), t("status"),
    ...["ordered", "confirmed", "shipped", "received", "accepted", "rejected"].map((k) => ({ label: t(k), cls: "num" })),
    t("inspected"), { label: t("open"), cls: "num" }, t("requested"), t("promised")];
  view(
    el("h1", {}, t("orders")),
    rows.length === 0 ? el("p", { class: "muted" }, t("orders.none")) :
      table(heads, rows.map(({ o, l }) => {
        const [st, cls] = lineState(o, l);
        return el("tr", { class: l.late ? "late" : undefined, "data-order": o.docId, "data-line": l.lineId },
          td(el("a", { href: "#/record/" + o.cid }, o.docId)), td(l.lineId), td(l.part),
          td([el("span", { class: cls }, (l.late ? "⚠ " : "") + t(st)),
            l.status && l.status !== "cancelled" ? el("div", { class: "muted" }, t("answer", t("ans." + l.status))) : null]),
          td(num(l.ordered) + " " + (l.unit || ""), "num"), qty(l.confirmed), qty(l.shipped), qty(l.received), qty(l.accepted), qty(l.rejected, Number(l.rejected) > 0 ? "bad" : ""),
          td((l.inspections || []).map((i) => el("div", { class: i.result === "fail" ? "bad" : undefined }, el("a", { href: "#/record/" + i.cid }, i.lot), " " + t("qc." + i.result)))),
          qty(l.open, Number(l.open) > 0 ? "strong" : ""),
          td(day(l.requested)), td(day(l.promised), l.late && l.promised ? "bad" : ""));
      }), { id: "orders" }),
    rows.length ? el("p", { class: "muted" }, t("orders.units")) : null,
  );
}

async function importView() {
  const [chans, kinds] = await Promise.all([api("/v1/channels"), Promise.resolve(["order", "despatch-advice", "receipt", "production-report", "quality-inspection", "inventory"])]);
  const chSel = el("select", { id: "imp-channel" }, chans.map((c) => el("option", { value: c.id }, c.name || short(c.id))));
  const kindSel = el("select", { id: "imp-kind" }, kinds.map((k) => el("option", { value: k }, k)));
  const file = el("input", { type: "file", id: "imp-file", accept: ".csv,.xlsx,text/csv" });
  const out = el("div", { id: "imp-out" });
  let chosen = null;
  const drop = el("div", { class: "drop", id: "imp-drop" }, el("p", {}, t("import.drop")), file, el("p", { id: "imp-name", class: "muted" }));
  const pick = (f) => { chosen = f; $("imp-name").textContent = f ? t("import.file", f.name) : ""; };
  file.addEventListener("change", () => pick(file.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); });
  const buttons = () => [$("imp-check"), $("imp-publish")];
  const run = async (dry) => {
    showError();
    if (!chosen) return;
    if (!dry && !confirm(t("import.confirm", chosen.name))) return;
    buttons().forEach((b) => { b.disabled = true; });
    const format = /\.xlsx$/i.test(chosen.name) ? "xlsx" : "csv";
    const q = new URLSearchParams({ kind: kindSel.value, format, file: chosen.name, dry_run: dry ? "true" : "false" });
    const rep = await api("/v1/channels/" + encodeURIComponent(chSel.value) + "/import?" + q, { method: "POST", body: chosen, headers: { "Content-Type": "application/octet-stream" } }).catch(showError);
    buttons().forEach((b) => { b.disabled = false; });
    if (rep) showReport(out, rep, dry);
  };
  view(
    el("h1", {}, t("import")),
    el("form", { class: "row", onsubmit: (e) => e.preventDefault() },
      el("label", { for: "imp-channel" }, t("import.channel")), chSel, el("label", { for: "imp-kind" }, t("import.kind")), kindSel),
    drop,
    el("p", {}, el("button", { type: "button", id: "imp-check", onclick: () => run(true) }, t("import.check")), " ",
      el("button", { type: "button", id: "imp-publish", class: "plain", onclick: () => run(false) }, t("import.publish"))),
    out,
  );
}

function showReport(out, rep, dry) {
  const errs = rep.errors || [];
  put(out,
    el("p", { id: "imp-summary" }, t("import.summary", num(rep.documents), num(rep.lines), num(rep.rows), num(rep.published), num(rep.newVersions), num(rep.unchanged))),
    rep.errorCount ? el("p", { class: "bad", id: "imp-errcount" }, t("import.errors", num(rep.errorCount))) : el("p", { class: "ok" }, dry ? t("import.noerrors") : t("import.published", num(rep.published + rep.newVersions))),
    errs.length ? table([{ label: t("row"), cls: "num" }, t("column"), t("problem")], errs.map((e) => el("tr", {}, td(num(e.row), "num"), td(e.column || ""), td(e.message))), { id: "imp-errors" }) : null,
    (rep.records || []).length ? el("div", {}, el("h2", {}, t("doc")),
      table([t("doc"), { label: t("rows"), cls: "num" }, { label: t("import.action") }, t("fields")], rep.records.map((d) => el("tr", {},
        td(d.docId + " v" + d.docVersion), td(num(d.rows[0]) + "–" + num(d.rows[1]), "num"), td(t("act." + d.action)),
        td(d.body ? el("details", {}, el("summary", {}, t("import.show", num(d.lines))), fields(d.body)) : ""))), { id: "imp-docs" })) : null);
}

// ---- routing ---------------------------------------------------------

// learnNames fills names from the node's status: its own and its
// partners' company names.
async function learnNames() {
  const st = await api("/v1/status");
  names[st.id] = st.name;
  for (const p of [...st.peers.connected, ...st.peers.offline]) if (p.name) names[p.id] = p.name;
  $("me").textContent = (st.name || "") + " " + short(st.id);
}

async function route() {
  if (location.hash && !location.hash.startsWith("#/")) return; // not a view (the skip link)
  if (stream) { stream.close(); stream = null; }
  delete $("view").dataset.lang; // set again once the view is drawn, in its language
  showError();
  translateStatic();
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    switch (parts[0]) {
      case "": await overview(); break;
      case "channel": await channelView(decodeURIComponent(parts[1] || "")); break;
      case "record": await recordView(decodeURIComponent(parts[1] || "")); break;
      case "orders": await ordersView(); break;
      case "import": await importView(); break;
      default: view(el("p", {}, t("notfound", location.hash)));
    }
    $("view").dataset.lang = lang;
    if (document.activeElement !== $("lang")) $("view").focus({ preventScroll: true });
  } catch (e) {
    if (e.status !== 401) showError(e);
  }
}

async function start() {
  $("lang").addEventListener("click", () => {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("sangsaeng-lang", lang);
    route().then(() => $("lang").focus());
  });
  $("logout").addEventListener("click", async () => {
    await api("/v1/session/logout", { method: "POST" }).catch(() => {});
    key = "";
    localStorage.removeItem("sangsaeng-key");
    signIn();
    $("error").textContent = t("signedout");
  });
  window.addEventListener("hashchange", route);
  document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); $("view").focus(); });
  // Just signed in: the key is in the fragment; keep it, and take it off
  // the address bar and the history.
  const m = location.hash.match(/^#key=([0-9a-f]+)$/);
  if (m) {
    key = m[1];
    localStorage.setItem("sangsaeng-key", key);
    history.replaceState(null, "", "/#/");
  }
  translateStatic();
  try {
    await api("/v1/session");
    $("logout").hidden = false;
    await learnNames().catch(showError);
  } catch (e) {
    if (e.status !== 401) showError(e);
    return;
  }
  route();
}
document.addEventListener("DOMContentLoaded", start);
