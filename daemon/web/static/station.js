// clonusd central station: the ward's alarms from the broker, pushed by Server-Sent Events.
// Time comes from Date.now() and timers only (setInterval), so a test can drive the clock.
"use strict";
(() => {
  const STALE_MS = 15000;        // status comes at least every 5 s
  const PAUSE_MS = 120000;       // audio pause: 2 minutes
  const BURST_EVERY_MS = 5000;   // high-priority burst repeat
  const MEDIUM_EVERY_MS = 15000; // medium-priority (technical: not monitored) burst repeat
  const HISTORY_MS = 24 * 3600 * 1000;
  const BATTERY_LOW = 20;
  // MQTT QoS 1 is at least once: a bridge whose link fails between a PUBLISH and its
  // PUBACK sends that event again, maybe after newer ones. Events carry a unique id; the
  // ids of this many recent events are kept, and a repeat changes nothing.
  const SEEN_IDS = 4096;

  const model = {
    prefix: "clonusd",
    daemons: new Map(),   // id -> {state, reason, at}
    sensors: new Map(),   // "bed/sensor" -> sensor record
    evidence: new Map(),  // "bed/sensor/evidence/id" -> payload
    broker: { connected: false, detail: "connecting" },
    stream: "connecting",
  };
  const station = {
    model, beeps: 0, mediumBeeps: 0, audioEnabled: false, pause: load("pause") || null,
    acks: load("acks") || {}, repeats: 0,
  };
  const seenIds = new Set();  // insertion-ordered: the oldest id is dropped first
  window.station = station;

  function load(key) {
    try { return JSON.parse(localStorage.getItem("clonusd." + key)); } catch (e) { return null; }
  }
  function save(key, value) {
    try { localStorage.setItem("clonusd." + key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }
  function setAttr(e, name, value) { if (e.getAttribute(name) !== value) e.setAttribute(name, value); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  const hhmmss = (ms) => new Date(ms).toTimeString().slice(0, 8);
  function since(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
  const num = (v, d = 1) => (typeof v === "number" ? v.toFixed(d) : "?");

  // -- messages --------------------------------------------------------------------------

  function sensor(bed, id) {
    const key = `${bed}/${id}`;
    let s = model.sensors.get(key);
    if (!s) {
      s = { key, bed, id, state: null, status: null, statusAt: 0, history: null, daemon: null,
        active: null, onsetAt: 0 };
      model.sensors.set(key, s);
    }
    return s;
  }

  function repeated(payload) {
    const id = payload && typeof payload === "object" ? payload.id : undefined;
    if (typeof id !== "string" || !id) return false;  // no id: cannot be told apart
    if (seenIds.has(id)) { station.repeats += 1; return true; }
    seenIds.add(id);
    if (seenIds.size > SEEN_IDS) seenIds.delete(seenIds.values().next().value);
    return false;
  }

  function accept(topic, payload, at) {
    const rest = topic.slice(model.prefix.length + 1).split("/");
    if (rest[rest.length - 1] === "event" && repeated(payload)) return;
    if (rest[0] === "daemon") {
      // clonusd/2: {prefix}/daemon/{id}/availability (JSON) and /event (the daemon's own
      // technical alarms); clonusd/1: {prefix}/daemon/availability ("online"/"offline").
      const id = rest.length === 3 ? rest[1] : "";
      const last = rest[rest.length - 1];
      if (last === "event") {
        const d = model.daemons.get(id);
        if (d && payload && payload.priority === "technical_alarm") {
          d.alarm = { kind: payload.event, detail: payload.detail || "", at };
        }
        return;
      }
      if (last !== "availability") return;
      if (payload === null) { model.daemons.delete(id); return; }
      const state = typeof payload === "string" ? payload : payload.state;
      model.daemons.set(id, { state, reason: payload.reason || "", at, alarm: null });
      return;
    }
    if (rest.length < 3) return;
    const s = sensor(rest[0], rest[1]);
    const kind = rest[2];
    if (kind === "evidence") {
      const key = rest.join("/");
      if (payload === null) model.evidence.delete(key); else model.evidence.set(key, payload);
      return;
    }
    if (!payload || typeof payload !== "object") return;
    if (payload.daemon !== undefined) s.daemon = payload.daemon;
    if (payload.site) { s.site = payload.site; s.side = payload.side; }
    if (kind === "status") { s.status = payload; s.statusAt = at; }
    else if (kind === "history") s.history = payload;
    else if (kind === "state") setActive(s, payload.clonus ? payload : null, at);
    else if (kind === "event") {
      if (payload.event === "clonus.onset" || payload.event === "clonus.update") setActive(s, payload, at);
      else if (payload.event === "clonus.end") setActive(s, null, at);
    }
  }

  function setActive(s, figures, at) {
    if (figures) {
      if (!s.active || s.active.episode !== figures.episode) {
        s.onsetAt = at - 1000 * Math.max(0, (figures.t || 0) - (figures.onset_t || 0));
      }
      s.active = figures;
    } else {
      s.active = null;
    }
  }

  // -- derived alarms ----------------------------------------------------------------------

  function daemonOf(s) {
    const id = s.daemon === null || s.daemon === undefined ? "" : s.daemon;
    return model.daemons.get(id) || (id === "" ? null : model.daemons.get(""));
  }

  function technical(s, now) {
    const out = [];  // [priority, text]
    const d = daemonOf(s);
    if (!model.broker.connected || model.stream !== "open") {
      out.push(["medium", "NOT MONITORED: station has no link to the broker"]);
    }
    if (d && d.state === "offline") {
      out.push(["medium", `DAEMON OFFLINE (${d.reason || "offline"}) since ${hhmmss(d.at)}`]);
    }
    if (!d) out.push(["medium", "DAEMON UNKNOWN: no availability from it"]);
    if (d && d.alarm) {
      const detail = d.alarm.detail ? ` (${d.alarm.detail})` : "";
      out.push(["medium", `DAEMON FAULT: ${d.alarm.kind} since ${hhmmss(d.alarm.at)}${detail}`]);
    }
    const st = s.status;
    if (!st) out.push(["medium", "NO STATUS from this sensor yet"]);
    else {
      const age = now - s.statusAt;
      if (age > STALE_MS) out.push(["medium", `NO DATA for ${since(age)}`]);
      if (st.stalled) out.push(["medium", "SENSOR STALLED: no samples"]);
      else if (st.link && st.link !== "connected") out.push(["medium", `LINK LOST: ${st.link_detail || st.link}`]);
      if (typeof st.battery_pct === "number" && st.battery_pct < BATTERY_LOW) {
        out.push(["low", `BATTERY LOW ${st.battery_pct} %`]);
      }
      const pending = st.outbox_pending;
      if (typeof pending === "number" && pending > 0) out.push(["low", `${pending} events waiting for the broker`]);
    }
    return out;
  }

  // An acknowledge belongs to one episode: its sensor, number and onset (the daemon's
  // clock), so a number reused after a daemon restart is not taken as acknowledged.
  function onsetWall(a) { return Date.parse(a.time) - 1000 * ((a.t || 0) - (a.onset_t || 0)); }
  // A technical one belongs to what is wrong: a new kind of fault needs a new acknowledge.
  function techKey(s, tech) {
    const kinds = tech.filter((x) => x[0] === "medium").map((x) => x[1].split(/[:(]| for | since /)[0].trim());
    return `${s.key}#tech#${kinds.join("|")}`;
  }
  function ackKey(s, tech) { return s.active ? `${s.key}#${s.active.episode}` : techKey(s, tech); }
  function ackOf(s, tech) {
    const ack = station.acks[ackKey(s, tech)];
    if (!ack) return null;
    return !s.active || Math.abs(ack.onset - onsetWall(s.active)) < 30000 ? ack : null;
  }

  // -- rendering -------------------------------------------------------------------------

  const beds = new Map();  // bed -> {root, tiles: Map, history}

  function bedView(bed) {
    let v = beds.get(bed);
    if (v) return v;
    const root = el("section", "bed");
    root.dataset.bed = bed;
    root.id = `bed-${encodeURIComponent(bed)}`;
    const head = el("div", "bed-head");
    head.append(el("div", "bed-name", bed), el("div", "daemon"));
    const tiles = el("div", "tiles");
    const history = el("div", "history");
    root.append(head, tiles, history);
    v = { root, tiles, history, tileViews: new Map(), historyHtml: "" };
    beds.set(bed, v);
    const main = $("#beds");
    const empty = $(".empty", main);
    if (empty) empty.remove();
    const names = [...beds.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const next = beds.get(names[names.indexOf(bed) + 1]);
    main.insertBefore(root, next ? next.root : null);
    return v;
  }

  function tileView(bv, s) {
    let t = bv.tileViews.get(s.id);
    if (t) return t;
    const root = el("div", "tile");
    root.dataset.key = s.key;
    const parts = {};
    for (const cls of ["where", "headline", "detail", "tech"]) root.append(parts[cls] = el("div", cls));
    const ackRow = el("div", "ack-row");
    const ack = el("button", "ack", "Acknowledge");
    ack.type = "button";
    const ackinfo = el("span", "ackinfo");
    ackRow.append(ack, ackinfo);
    const live = el("div", "live-evidence");
    const health = el("div", "health");
    root.append(ackRow, live, health);
    ack.addEventListener("click", () => {
      const cur = model.sensors.get(s.key);
      if (!cur) return;
      const now = Date.now();
      const tech = technical(cur, now);
      if (!cur.active && !tech.some((x) => x[0] === "medium")) return;
      for (const [k, v] of Object.entries(station.acks)) if (now - v.at > 86400000) delete station.acks[k];
      station.acks[ackKey(cur, tech)] = { by: nurse(), at: now, onset: cur.active ? onsetWall(cur.active) : 0 };
      save("acks", station.acks);
      render();
    });
    t = { root, ...parts, ackinfo, live, health, liveHtml: "" };
    bv.tileViews.set(s.id, t);
    const ids = [...bv.tileViews.keys()].sort();
    const next = bv.tileViews.get(ids[ids.indexOf(s.id) + 1]);
    bv.tiles.insertBefore(root, next ? next.root : null);
    return t;
  }

  function renderTile(bv, s, now) {
    const t = tileView(bv, s);
    const where = `${s.side || ""} ${s.site || ""}`.trim() || s.id;
    const kind = s.status ? s.status.sensor_kind : "";
    setText(t.where, `${where} · ${s.id}${kind ? " · " + kind : ""}`);
    const tech = technical(s, now);
    let alarm = "none";
    if (s.active) {
      alarm = "clonus";
      const a = s.active;
      setText(t.headline, "SUSTAINED CLONUS");
      setText(t.detail, `${s.bed} · ${where} · ${a.beats} beats · ${num(a.frequency_hz)} Hz · ${since(now - s.onsetAt)} since onset`);
    } else {
      alarm = tech.some((x) => x[0] === "medium") ? "technical" : tech.length ? "low" : "none";
      setText(t.headline, alarm === "technical" ? "NOT MONITORED" : "monitoring · no clonus");
      setText(t.detail, "");
    }
    if (t.root.dataset.alarm !== alarm) {
      t.root.dataset.alarm = alarm;
      t.root.dataset.alarmAt = String(Date.now());
    }
    const techHtml = tech.map(([p, text]) => `<div class="${p}">${esc(text)}</div>`).join("");
    if (t.tech.innerHTML !== techHtml) t.tech.innerHTML = techHtml;
    setAttr(t.root, "data-tech", tech.map((x) => x[1].split(/[ :(]/)[0].toLowerCase()).join(" "));
    const ack = alarm === "clonus" || alarm === "technical" ? ackOf(s, tech) : null;
    setText(t.ackinfo, ack ? `Acknowledged by ${ack.by} at ${hhmmss(ack.at)}` : "");
    setAttr(t.root, "data-acked", ack ? "true" : "false");
    // The evidence so far: why this alarm fired.
    let liveHtml = "";
    if (s.active) {
      const a = s.active;
      const since = onsetWall(a) - 3000;
      // Same episode number, published since this onset (not a retained one from an earlier run).
      const ev = [...model.evidence.values()].find((e) => e.bed === s.bed && e.sensor === s.id &&
        e.episode === a.episode && Date.parse(e.time) >= since);
      if (ev) liveHtml = evidenceSvg(ev, 560, 90);
    }
    if (liveHtml !== t.liveHtml) { t.live.innerHTML = liveHtml; t.liveHtml = liveHtml; }
    const st = s.status;
    const lastKnown = tech.some((x) => x[0] === "medium") ? "last known: " : "";
    setText(t.health, st ? `${lastKnown}link ${st.link} · ${st.rate_hz ?? "?"} Hz of ${st.nominal_rate_hz} · loss ${num(100 * (st.packet_loss || 0))} % · battery ${st.battery_pct ?? "?"} % · ${st.quality}` : "");
    return { alarm, tech };
  }

  const svgCache = new WeakMap();  // payload -> {size: svg}: drawn once, not every render
  function evidenceSvg(ev, w, h) {
    let byPayload = svgCache.get(ev);
    if (!byPayload) svgCache.set(ev, byPayload = {});
    const size = `${w}x${h}`;
    if (!(size in byPayload)) byPayload[size] = drawEvidence(ev, w, h);
    return byPayload[size];
  }

  function drawEvidence(ev, w, h) {
    const xs = ev.samples || [];
    if (xs.length < 2) return "";
    const fs = ev.fs_hz, pad = 6;
    const peak = Math.max(1, ...xs.map(Math.abs));
    const X = (sec) => pad + (sec * fs / (xs.length - 1)) * (w - 2 * pad);
    const Y = (v) => h / 2 - (v / peak) * (h / 2 - pad);
    const pts = xs.map((v, i) => `${X(i / fs).toFixed(1)},${Y(v).toFixed(1)}`).join(" ");
    const beats = (ev.beats_s || []).map((b) => {
      const i = Math.min(xs.length - 1, Math.max(0, Math.round(b * fs)));
      return `<circle class="beat" cx="${X(b).toFixed(1)}" cy="${Y(xs[i]).toFixed(1)}" r="3.5"/>`;
    }).join("");
    const onset = `<line class="onset" x1="${X(ev.onset_s).toFixed(1)}" x2="${X(ev.onset_s).toFixed(1)}" y1="0" y2="${h}"/>`;
    const label = `${(ev.beats_s || []).length} beats marked · ${esc(ev.signal)} (${esc(ev.unit)}) · ${((xs.length - 1) / fs).toFixed(1)} s${ev.final ? "" : " so far"}${ev.truncated ? " (start of episode)" : ""}`;
    return `<svg class="evidence" data-episode-id="${esc(ev.episode_id)}" data-beats="${(ev.beats_s || []).length}" data-final="${ev.final}" viewBox="0 0 ${w} ${h}" width="100%" height="${h}" preserveAspectRatio="none" role="img" aria-label="${label}"><title>${label}</title>${onset}<polyline class="trace" points="${pts}"/>${beats}</svg><div class="caption">${label}</div>`;
  }

  function renderHistory(bv, sensors, now) {
    const rows = [];
    for (const s of sensors) {
      for (const e of (s.history && s.history.episodes) || []) {
        const end = Date.parse(e.end);
        if (!(now - end <= HISTORY_MS)) continue;
        rows.push([end, s, e]);
      }
    }
    rows.sort((a, b) => b[0] - a[0]);
    let html = `<h3>Episodes, last 24 h (${rows.length})</h3>`;
    for (const [, s, e] of rows) {
      const ev = e.evidence ? model.evidence.get(e.evidence) : null;
      const where = `${s.side || ""} ${s.site || ""}`.trim();
      const onset = e.onset ? hhmmss(Date.parse(e.onset)) : "?";
      html += `<div class="episode" data-episode-id="${esc(e.episode_id)}" data-beats="${e.beats}">` +
        `<div class="figs"><b>${onset}</b> ${esc(where)} · <b>${e.beats} beats</b> · ${num(e.frequency_hz)} Hz · ${num(e.duration_s)} s</div>` +
        `<div class="reason">${esc(String(e.end_reason || "").replace(/_/g, " "))}</div>` +
        (ev ? evidenceSvg(ev, 400, 64) : `<div class="none">no signal snippet${e.evidence ? " yet" : ""}</div>`) +
        `</div>`;
    }
    if (html !== bv.historyHtml) { bv.history.innerHTML = html; bv.historyHtml = html; }
  }

  function render() {
    const now = Date.now();
    const byBed = new Map();
    for (const s of model.sensors.values()) {
      if (!byBed.has(s.bed)) byBed.set(s.bed, []);
      byBed.get(s.bed).push(s);
    }
    let physiological = false;
    let unacked = false;
    let unackedTechnical = false;
    const strip = [];  // [priority, bed, text]
    for (const [bed, sensors] of byBed) {
      const bv = bedView(bed);
      let stale = false;
      let offline = false;
      const daemonIds = new Set();
      for (const s of sensors) {
        const { alarm, tech } = renderTile(bv, s, now);
        if (alarm === "clonus") {
          physiological = true;
          if (!ackOf(s, tech)) unacked = true;
          const where = `${s.side || ""} ${s.site || ""}`.trim() || s.id;
          strip.push(["high", bed, `${bed} · ${where} · CLONUS ${s.active.beats} beats`]);
        } else if (alarm === "technical") {
          if (!ackOf(s, tech)) unackedTechnical = true;
          strip.push(["medium", bed, `${bed} · ${s.side || ""} ${s.site || s.id}: not monitored`]);
        }
        if (tech.some((x) => x[1].startsWith("NO DATA"))) stale = true;
        const d = daemonOf(s);
        if (d && d.state === "offline") offline = true;
        daemonIds.add(s.daemon ?? "");
      }
      const d = sensors.map(daemonOf).find(Boolean);
      setAttr(bv.root, "data-daemon", offline ? "offline" : d ? d.state : "unknown");
      setAttr(bv.root, "data-stale", String(stale));
      const names = [...daemonIds].filter(Boolean).join(", ");
      const linkOk = model.broker.connected && model.stream === "open";
      const known = linkOk ? (d ? d.state : "unknown") : "unknown (no link)";
      setText($(".daemon", bv.root), offline ? `DAEMON OFFLINE${names ? " · " + names : ""}` : `daemon ${names || "?"} ${known}`);
      renderHistory(bv, sensors, now);
    }
    strip.sort((a, b) => (a[0] === b[0] ? 0 : a[0] === "high" ? -1 : 1));
    const stripHtml = strip.map(([p, bed, text]) =>
      `<a class="${p}" href="#bed-${encodeURIComponent(bed)}">${esc(text)}</a>`).join("");
    const alarms = $("#alarms");
    if (alarms.innerHTML !== stripHtml) alarms.innerHTML = stripHtml;
    // Header: clock, link, audio.
    setText($("#clock"), hhmmss(now));
    const link = $("#link");
    const linkOk = model.broker.connected && model.stream === "open";
    setAttr(link, "data-state", linkOk ? "connected" : "lost");
    setText(link, linkOk ? `broker ${model.broker.detail}` : model.stream !== "open" ? "NO LINK to the station server" : `NO LINK to the broker (${model.broker.detail})`);
    const banner = $("#banner");
    banner.hidden = linkOk;
    if (!linkOk) setText(banner, "NOT MONITORED: this station has lost its link; alarms will not show here.");
    if (station.pause && now >= station.pause.until) { station.pause = null; save("pause", null); }
    const pause = station.pause;
    const left = pause ? since(1000 * Math.ceil((pause.until - now) / 1000)) : "";
    setText($("#pauseinfo"), pause ? `Audio paused by ${pause.by} at ${hhmmss(pause.at)} · ${left} left` : "");
    setText($("#pause"), pause ? "Resume audio" : "Pause audio 2 min");
    // High priority (clonus) sounds over medium (a bed not monitored); each until acknowledged.
    const audio = !station.audioEnabled ? "off" : pause ? "paused"
      : physiological && unacked ? "sounding" : unackedTechnical ? "medium" : "quiet";
    setAttr(document.body, "data-audio", audio);
    if (audio !== station.lastAudio) { station.nextBurst = 0; station.lastAudio = audio; }
    if ((audio === "sounding" || audio === "medium") && now >= (station.nextBurst || 0)) {
      if (audio === "sounding") burst(); else mediumBurst();
      station.nextBurst = now + (audio === "sounding" ? BURST_EVERY_MS : MEDIUM_EVERY_MS);
    }
  }

  // -- sound: IEC 60601-1-8 style high-priority burst, generated here ------------------------

  function nurse() { return ($("#nurse").value || "").trim() || "unnamed"; }

  function burst() {
    station.beeps += 1;
    // 10 pulses: x-x-x--x-x, twice, 150 ms each, fundamental 523 Hz with harmonics.
    pulses([0, 0.25, 0.5, 1.0, 1.25, 2.0, 2.25, 2.5, 3.0, 3.25], 523.25, 0.15);
  }

  function mediumBurst() {
    station.mediumBeeps += 1;
    // 3 pulses, x-x-x, 200 ms each, lower (392 Hz): medium priority, told apart by ear.
    pulses([0, 0.3, 0.6], 392.0, 0.2);
  }

  function pulses(offsets, f0, len) {
    const ctx = station.ctx;
    if (!ctx) return;
    const t0 = ctx.currentTime + 0.02;
    for (const off of offsets) {
      for (const [mult, level] of [[1, 0.22], [2, 0.08], [3, 0.05], [4, 0.03]]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = f0 * mult;
        gain.gain.setValueAtTime(0, t0 + off);
        gain.gain.linearRampToValueAtTime(level, t0 + off + 0.02);
        gain.gain.setValueAtTime(level, t0 + off + len - 0.02);
        gain.gain.linearRampToValueAtTime(0, t0 + off + len);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t0 + off);
        osc.stop(t0 + off + len + 0.01);
      }
    }
  }

  $("#sound").addEventListener("click", () => {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!station.ctx && Ctx) station.ctx = new Ctx();
    if (station.ctx) station.ctx.resume();
    station.audioEnabled = true;
    const b = $("#sound");
    b.className = "sound-on";
    b.textContent = "Sound on";
    render();
  });
  $("#pause").addEventListener("click", () => {
    const now = Date.now();
    station.pause = station.pause ? null : { by: nurse(), at: now, until: now + PAUSE_MS };
    save("pause", station.pause);
    render();
  });
  const nurseInput = $("#nurse");
  nurseInput.value = load("nurse") || "";
  nurseInput.addEventListener("change", () => save("nurse", nurseInput.value.trim()));

  // -- the stream ------------------------------------------------------------------------

  function connect() {
    const es = new EventSource("events");
    es.addEventListener("snapshot", (m) => {
      const data = JSON.parse(m.data);
      model.prefix = data.prefix;
      setText($("#prefix"), `· ${data.prefix}`);
      model.broker = data.broker;
      model.stream = "open";
      model.daemons.clear();
      model.evidence.clear();
      const now = Date.now();
      for (const x of data.messages) accept(x.topic, x.payload, now - x.age_ms);
      render();
    });
    es.addEventListener("msg", (m) => {
      const x = JSON.parse(m.data);
      accept(x.topic, x.payload, Date.now());
      render();
    });
    es.addEventListener("broker", (m) => { model.broker = JSON.parse(m.data); render(); });
    es.onerror = () => { model.stream = "lost"; render(); };
  }
  connect();
  setInterval(render, 250);
  render();
})();
