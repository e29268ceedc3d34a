// The labelling page: fetch a query, play its segments side by side, send the answer.
// Plain JS, no build step, nothing loaded from elsewhere. Everything from the server is
// inserted with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "robopref.label.token";
  const RATE_KEY = "robopref.label.rate";
  const POLL_MS = 150;        // wait between polls of a video still rendering (ms)
  const RECHECK_MS = 20000;   // how often the "all done" view asks for new queries (ms)
  const DRIFT_S = 0.08;       // re-seek the right video when it drifts further (s)
  const AXES = [["x", "#f2a272"], ["y", "#8fd19e"], ["z", "#7fb4ff"]];
  const CHOICE_TEXT = {
    first: "left better", second: "right better", equal: "equal", cannot_tell: "cannot tell",
  };

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const project = params.get("project");
  const state = {
    token: null,
    query: null,           // the query on screen
    busy: false,           // an answer or undo is on its way
    shownAt: null,         // performance.now() when the query became watchable
    sentAt: null,          // performance.now() when the last answer was sent
    rate: Number(localStorage.getItem(RATE_KEY)) || 1,
    urls: [],              // blob: URLs of the videos on screen, revoked on the next query
    traces: { first: null, second: null },
    generation: 0,         // bumps per query shown; stale loads check it and give up
    recheck: null,         // timer of the "all done" view's next look for new queries
  };
  // Read by the browser test: how long after an answer the next pair was playable (ms).
  window.robopref = { readyAfterMs: [], state };

  const sides = () => (state.query && state.query.kind === "pair" ? ["first", "second"] : ["first"]);
  const video = (side) => $(`video-${side}`);

  // -- token -------------------------------------------------------------------------
  function takeToken() {
    const fromUrl = params.get("token");
    if (fromUrl) {
      localStorage.setItem(TOKEN_KEY, fromUrl);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    }
    state.token = localStorage.getItem(TOKEN_KEY);
  }

  function askForToken(message) {
    localStorage.removeItem(TOKEN_KEY);
    state.token = null;
    setView("token");
    $("token-error").textContent = message || "";
    $("token-input").focus();
  }

  // -- HTTP --------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  function withProject(path) {
    if (!project) return path;
    return path + (path.includes("?") ? "&" : "?") + "project=" + encodeURIComponent(project);
  }

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    if (response.status === 401) {
      const detail = await detailOf(response);
      askForToken(detail);
      throw new ApiError(401, detail);
    }
    return response;
  }

  async function detailOf(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  async function json(path, options) {
    const response = await api(path, options);
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    return response.status === 204 ? null : response.json();
  }

  // -- views -------------------------------------------------------------------------
  function setView(name) {
    $("token-view").hidden = name !== "token";
    $("done-view").hidden = name !== "done";
    $("query-view").hidden = name !== "query";
    document.body.dataset.state = name === "query" ? "loading" : name;
  }

  function toast(text, kind = "") {
    const el = $("toast");
    el.textContent = text;
    el.className = `toast ${kind}`;
  }

  function showShortcuts() {
    const el = $("shortcuts");
    el.textContent = "";
    let items = [];
    if (state.query && state.query.kind === "pair") {
      items = [[["←", "1"], "left"], [["→", "2"], "right"], [["↓", "=", "e"], "equal"],
               [["c"], "cannot tell"]];
    } else if (state.query) {
      items = [[["0", "–", "9"], "score"], [["c"], "cannot tell"]];
    }
    items.push([["u", "⌫"], "undo"]);
    if (state.query) {
      items.push([["r"], "replay"], [["space"], "pause"], [["[", "]"], "speed"],
                 [["Esc"], "exit reason"]);
    }
    for (const [keys, what] of items) {
      const group = document.createElement("span");
      group.style.marginRight = "14px";
      for (const key of keys) {
        if (key === "–") { group.append("–"); continue; }
        const kbd = document.createElement("kbd");
        kbd.textContent = key;
        group.append(kbd);
      }
      group.append(` ${what}`);
      el.append(group);
    }
  }

  async function refreshProgress() {
    try {
      const p = await json(withProject("/api/progress"));
      const mine = Object.values(p.by_annotator || {}).reduce((a, b) => a + b, 0);
      const left = p.remaining_for_caller ?? 0;
      $("progress-text").textContent = `${mine} answered · ${left} remaining`;
      const total = mine + left;
      $("meter-fill").style.width = total ? `${(100 * mine) / total}%` : "0";
      $("who").textContent = Object.keys(p.by_annotator || {})[0] || "";
      if (!$("done-view").hidden) {
        $("done-text").textContent = `Nothing left in the queue for you — ${mine} answered. Thank you.`;
      }
    } catch (err) {
      if (err.status !== 401) $("progress-text").textContent = "progress unavailable";
    }
  }

  // -- queries -----------------------------------------------------------------------
  async function loadNext() {
    const response = await api(withProject("/api/next"));
    if (response.status === 204) {
      clearQuery();
      setView("done");
      showShortcuts();
      refreshProgress();
      $("check-again").focus();
      // The loop may enqueue more while the page waits: look again now and then.
      clearTimeout(state.recheck);
      state.recheck = setTimeout(() => {
        if (!$("done-view").hidden && !state.busy) start();
      }, RECHECK_MS);
      return;
    }
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    show(await response.json());
  }

  function clearQuery() {
    state.generation += 1;
    state.query = null;
    $("timer").textContent = "";
    for (const side of ["first", "second"]) {
      const v = video(side);
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
    for (const url of state.urls) URL.revokeObjectURL(url);
    state.urls = [];
  }

  function describe(segment) {
    return `${segment.episode_id} · frames ${segment.start}–${segment.end}`;
  }

  function show(query, reason = "") {
    clearQuery();
    state.query = query;
    state.shownAt = null;
    const generation = state.generation;
    const pair = query.kind === "pair";
    setView("query");
    document.body.dataset.queryKey = query.key;
    document.body.dataset.kind = query.kind;
    $("panels").classList.toggle("single", !pair);
    $("panel-second").hidden = !pair;
    $("pair-choices").hidden = !pair;
    $("score-choices").hidden = pair;
    $("name-first").textContent = pair ? "Left" : "Episode";
    $("seg-first").textContent = describe(query.first);
    if (pair) $("seg-second").textContent = describe(query.second);
    $("reason").value = reason;
    showShortcuts();
    const loads = sides().map((side) => loadVideo(query, side, generation));
    for (const side of sides()) loadTrace(query, side, generation);
    Promise.all(loads).then((ok) => {
      if (generation !== state.generation) return;
      startTogether();
      state.shownAt = performance.now();
      if (state.sentAt !== null && ok.every(Boolean)) {
        window.robopref.readyAfterMs.push(state.shownAt - state.sentAt);
      }
      state.sentAt = null;
      document.body.dataset.state = ok.every(Boolean) ? "ready" : "novideo";
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Resolves true once the side's video can play, false when it cannot be had.
  async function loadVideo(query, side, generation) {
    const note = $(`note-${side}`);
    note.className = "video-note";
    note.textContent = "loading video…";
    const url = `/api/queries/${query.id}/video/${side}`;
    try {
      for (;;) {
        const response = await api(url);
        if (generation !== state.generation) return false;
        if (response.status === 202) {
          note.textContent = "rendering video…";
          // The server already held the request up to a second for the render, so ask
          // again soon rather than a whole Retry-After later: the video shows sooner.
          await sleep(POLL_MS);
          if (generation !== state.generation) return false;
          continue;
        }
        if (!response.ok) throw new ApiError(response.status, await detailOf(response));
        const blob = await response.blob();
        if (generation !== state.generation) return false;
        const objectUrl = URL.createObjectURL(blob);
        state.urls.push(objectUrl);
        const v = video(side);
        const ready = new Promise((resolve) => {
          const done = (ok) => {
            v.removeEventListener("loadeddata", onData);
            v.removeEventListener("error", onError);
            resolve(ok);
          };
          const onData = () => done(true);
          const onError = () => done(false);
          v.addEventListener("loadeddata", onData);
          v.addEventListener("error", onError);
        });
        v.src = objectUrl;
        v.load();
        const ok = await ready;
        if (generation !== state.generation) return false;
        if (!ok) throw new Error("this browser cannot play the video (VP9 WebM)");
        note.textContent = "";
        return true;
      }
    } catch (err) {
      if (generation === state.generation) {
        note.className = "video-note error";
        note.textContent = err.message || String(err);
      }
      return false;
    }
  }

  async function loadTrace(query, side, generation) {
    const note = $(`trace-note-${side}`);
    const canvas = $(`trace-${side}`);
    state.traces[side] = null;
    canvas.hidden = true;
    note.textContent = "";
    try {
      const trace = await json(`/api/queries/${query.id}/trace/${side}`);
      if (generation !== state.generation) return;
      if (!trace || !trace.t || trace.t.length < 2) {
        note.textContent = "no force/torque data for this episode";
        return;
      }
      canvas.hidden = false;
      state.traces[side] = { data: trace, image: null };
      renderTrace(side);
    } catch (err) {
      if (generation === state.generation && err.status !== 401) {
        note.textContent = `trace unavailable: ${err.message}`;
      }
    }
  }

  // -- playback ----------------------------------------------------------------------
  function startTogether() {
    const videos = sides().map(video).filter((v) => v.readyState >= 2);
    for (const v of videos) {
      v.pause();
      v.currentTime = 0;
      v.playbackRate = state.rate;
    }
    for (const v of videos) v.play().catch(() => {});
  }

  function togglePause() {
    const videos = sides().map(video).filter((v) => v.readyState >= 2);
    const paused = videos.some((v) => !v.paused);
    for (const v of videos) (paused ? v.pause() : v.play().catch(() => {}));
    toast(paused ? "paused" : "playing");
  }

  function setRate(rate) {
    state.rate = rate;
    localStorage.setItem(RATE_KEY, String(rate));
    for (const side of ["first", "second"]) video(side).playbackRate = rate;
    for (const b of document.querySelectorAll(".rate")) {
      b.classList.toggle("on", Number(b.dataset.rate) === rate);
    }
  }

  function stepRate(direction) {
    const rates = [...document.querySelectorAll(".rate")].map((b) => Number(b.dataset.rate));
    const i = Math.max(0, rates.indexOf(state.rate));
    setRate(rates[Math.min(rates.length - 1, Math.max(0, i + direction))]);
    toast(`speed ${state.rate}×`);
  }

  // Every frame: loop both videos together (the one that ends first waits on its last
  // frame for the other), keep the right one on the left one's clock, move the cursors.
  function tick() {
    if (state.query) {
      const videos = sides().map(video).filter((v) => v.readyState >= 2);
      if (videos.length && videos.every((v) => v.ended)) startTogether();
      if (videos.length === 2) {
        const [a, b] = videos;
        if (!a.paused && !b.paused && !a.ended && !b.ended &&
            Math.abs(a.currentTime - b.currentTime) > DRIFT_S) {
          b.currentTime = a.currentTime;
        }
      }
      for (const side of sides()) drawCursor(side);
      if (state.shownAt !== null) {
        $("timer").textContent = `${((performance.now() - state.shownAt) / 1000).toFixed(1)} s`;
      }
    }
    requestAnimationFrame(tick);
  }

  // -- traces ------------------------------------------------------------------------
  function renderTrace(side) {
    const entry = state.traces[side];
    const canvas = $(`trace-${side}`);
    if (!entry || canvas.hidden) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const image = document.createElement("canvas");
    image.width = width;
    image.height = height;
    const g = image.getContext("2d");
    g.scale(ratio, ratio);
    const w = width / ratio, h = height / ratio;
    const { t } = entry.data;
    const strips = [["force", "N"], ["torque", "N·m"]].filter(([k]) => entry.data[k]);
    const stripH = h / Math.max(1, strips.length);
    const t0 = t[0], span = Math.max(1e-9, t[t.length - 1] - t0);
    const left = 66;
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "top";
    strips.forEach(([key, unit], s) => {
      const rows = entry.data[key];
      let lo = Infinity, hi = -Infinity;
      for (const row of rows) {
        for (const v of row) {
          if (typeof v !== "number") continue;  // null: a sample the sensor dropped
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
      }
      if (!(hi > lo)) { lo -= 1; hi += 1; }
      const pad = 0.08 * (hi - lo);
      lo -= pad; hi += pad;
      const top = s * stripH + 4, bottom = (s + 1) * stripH - 4;
      const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
      const x = (tt) => left + ((tt - t0) / span) * (w - left - 4);
      g.fillStyle = "#1a1d21";
      g.fillRect(left, top, w - left - 4, bottom - top);
      if (lo < 0 && hi > 0) {
        g.strokeStyle = "#3a4048";
        g.beginPath(); g.moveTo(left, y(0)); g.lineTo(w - 4, y(0)); g.stroke();
      }
      g.fillStyle = "#9aa1a9";
      g.fillText(`${key} ${unit}`, 2, top);
      const range = Math.max(Math.abs(lo + pad), Math.abs(hi - pad));
      g.fillText(`±${range.toPrecision(3)}`, 2, top + 14);
      g.lineWidth = 1.25;
      AXES.forEach(([, colour], axis) => {
        g.strokeStyle = colour;
        g.beginPath();
        let pen = false;
        rows.forEach((row, i) => {
          if (typeof row[axis] !== "number" || typeof t[i] !== "number") { pen = false; return; }
          const px = x(t[i]), py = y(row[axis]);
          if (pen) g.lineTo(px, py); else g.moveTo(px, py);
          pen = true;
        });
        g.stroke();
      });
    });
    // Axis legend in the gutter, under the first strip's range.
    AXES.forEach(([name, colour], i) => {
      g.fillStyle = colour;
      g.fillText(name, 2 + 12 * i, 32);
    });
    entry.image = image;
    entry.left = left;
    entry.span = span;
    drawCursor(side);
  }

  function drawCursor(side) {
    const entry = state.traces[side];
    if (!entry || !entry.image) return;
    const canvas = $(`trace-${side}`);
    const g = canvas.getContext("2d");
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.drawImage(entry.image, 0, 0);
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.width / ratio;
    const v = video(side);
    const frac = Math.min(1, Math.max(0, (v.currentTime || 0) / entry.span));
    const x = (entry.left + frac * (w - entry.left - 4)) * ratio;
    g.strokeStyle = "#ffd166";
    g.lineWidth = 1.5 * ratio;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, canvas.height); g.stroke();
  }

  // -- answers -----------------------------------------------------------------------
  async function answer(choice, score = null) {
    const query = state.query;
    if (!query || state.busy) return;
    if (state.shownAt === null) {
      toast("wait for the video to load before answering");
      return;
    }
    if (query.kind === "pair" && score !== null) return;
    if (query.kind !== "pair" && choice !== null && choice !== "cannot_tell") return;
    state.busy = true;
    document.body.dataset.busy = "1";
    const seconds = (performance.now() - state.shownAt) / 1000;
    const reason = $("reason").value.trim();
    const body = { time_taken_s: Math.round(seconds * 1000) / 1000 };
    if (choice !== null) body.choice = choice;
    if (score !== null) body.score = score;
    if (reason) body.reason = reason;
    flash(choice, score);
    state.sentAt = performance.now();
    try {
      const response = await api(`/api/queries/${query.id}/label`, { method: "POST", body });
      if (response.status === 409) {
        toast(`not saved: ${await detailOf(response)}`, "error");
      } else if (!response.ok) {
        throw new ApiError(response.status, await detailOf(response));
      } else {
        const what = score !== null ? `score ${score}` : CHOICE_TEXT[choice];
        toast(`saved ${query.key}: ${what} · ${seconds.toFixed(1)} s`, "ok");
      }
      await loadNext();
      refreshProgress();
    } catch (err) {
      if (err.status !== 401) toast(err.message || String(err), "error");
      state.sentAt = null;
    } finally {
      state.busy = false;
      document.body.dataset.busy = "0";
    }
  }

  function flash(choice, score) {
    const selector = score !== null ? `.digit[data-score="${score}"]` : `.choice[data-choice="${choice}"]`;
    for (const el of document.querySelectorAll(selector)) {
      el.classList.add("flash");
      setTimeout(() => el.classList.remove("flash"), 250);
    }
  }

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    try {
      const response = await api(withProject("/api/undo"), { method: "POST" });
      if (response.status === 404) {
        toast("nothing to undo");
        return;
      }
      if (!response.ok) throw new ApiError(response.status, await detailOf(response));
      const label = await response.json();
      const what = label.score !== null ? `score ${label.score}` : CHOICE_TEXT[label.choice];
      toast(`undid ${label.query.key}: ${what} — answer it again`, "ok");
      show(label.query, label.reason || "");
      refreshProgress();
    } catch (err) {
      if (err.status !== 401) toast(err.message || String(err), "error");
    } finally {
      state.busy = false;
    }
  }

  // -- input -------------------------------------------------------------------------
  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    if (typing) {
      // The reason field keeps every key; Esc or Enter hands the keys back to labelling.
      if (target.id === "reason" && (event.key === "Escape" || event.key === "Enter")) {
        event.preventDefault();
        target.blur();
      }
      return;
    }
    if (!$("token-view").hidden) return;
    const key = event.key;
    let handled = true;
    if (key === "u" || key === "Backspace") undo();
    else if (!state.query) handled = false;
    else if (key === "r") startTogether();
    else if (key === " ") togglePause();
    else if (key === "[") stepRate(-1);
    else if (key === "]") stepRate(1);
    else if (event.repeat) handled = false;  // a held key must not answer a second query
    else if (key === "c") answer("cannot_tell");
    else if (state.query.kind === "pair") {
      if (key === "ArrowLeft" || key === "1") answer("first");
      else if (key === "ArrowRight" || key === "2") answer("second");
      else if (key === "ArrowDown" || key === "=" || key === "e") answer("equal");
      else handled = false;
    } else if (/^[0-9]$/.test(key)) answer(null, Number(key));
    else handled = false;
    if (handled) event.preventDefault();
  }

  function wire() {
    document.addEventListener("keydown", onKey);
    for (const b of document.querySelectorAll(".choice[data-choice]")) {
      b.addEventListener("click", () => { b.blur(); answer(b.dataset.choice); });
    }
    const digits = $("digits");
    for (let i = 0; i <= 9; i += 1) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "digit";
      b.dataset.score = String(i);
      b.textContent = String(i);
      b.addEventListener("click", () => { b.blur(); answer(null, i); });
      digits.append(b);
    }
    for (const b of document.querySelectorAll(".rate")) {
      b.addEventListener("click", () => { b.blur(); setRate(Number(b.dataset.rate)); });
    }
    $("replay").addEventListener("click", (e) => { e.currentTarget.blur(); startTogether(); });
    $("undo").addEventListener("click", (e) => { e.currentTarget.blur(); undo(); });
    $("done-undo").addEventListener("click", () => undo());
    $("check-again").addEventListener("click", () => start());
    $("sign-out").addEventListener("click", () => { clearQuery(); askForToken("signed out"); });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) { $("token-error").textContent = "paste your token first"; return; }
      localStorage.setItem(TOKEN_KEY, token);
      state.token = token;
      $("token-input").value = "";
      start();
    });
    window.addEventListener("resize", () => { for (const side of sides()) renderTrace(side); });
  }

  async function start() {
    if (!state.token) { askForToken(""); return; }
    try {
      await loadNext();
      refreshProgress();
    } catch (err) {
      if (err.status !== 401) toast(err.message || String(err), "error");
    }
  }

  takeToken();
  wire();
  setRate(state.rate);
  requestAnimationFrame(tick);
  start();
})();
