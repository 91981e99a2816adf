// The customer dashboard: plain JS, no dependencies. API data only ever reaches the page as
// text (textContent, createElement, setAttribute): never as markup.
"use strict";

(() => {
  const KEY_STORAGE = "creditledger.apiKey";
  const LEDGER_LIMIT = 25;
  const ACTIVITY_DAYS = 30;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const numberFormat = new Intl.NumberFormat("en-US");

  const state = {
    key: null,
    // The ledger pages visited so far: each is the query that fetched it (cursor or page).
    ledgerPages: [{ page: 1 }],
    ledgerIndex: 0,
    ledgerNext: null,
    generation: 0, // bumps on sign-out, so late answers for an old key are dropped
  };

  const $ = (id) => {
    const found = document.getElementById(id);
    if (!found) throw new Error(`missing element #${id}`);
    return found;
  };

  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter;
    }

    describe() {
      switch (this.status) {
        case 401:
          return `Your API key was not accepted (401): ${this.detail}`;
        case 403:
          return `This API key may not do that (403): ${this.detail}`;
        case 404:
          return `Not available on this server (404): ${this.detail}`;
        case 429: {
          const wait = this.retryAfter ? ` Try again in ${this.retryAfter} s.` : "";
          return `Too many requests (429): ${this.detail}.${wait}`;
        }
        case 0:
          return `The server could not be reached: ${this.detail}`;
        default:
          return `The request failed (${this.status}): ${this.detail}`;
      }
    }

    get signsOut() {
      return this.status === 401 || this.status === 403;
    }
  }

  async function problemDetail(response) {
    try {
      const body = await response.json();
      if (body && typeof body === "object") {
        const detail = body.detail ?? body.title;
        if (typeof detail === "string" && detail) return detail;
        if (Array.isArray(detail) && detail.length) return JSON.stringify(detail);
      }
    } catch {
      // not JSON: fall through to the status text
    }
    return response.statusText || "error";
  }

  async function api(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") {
        url.searchParams.set(name, String(value));
      }
    }
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${state.key}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, String(error && error.message ? error.message : error), null);
    }
    if (!response.ok) {
      const detail = await problemDetail(response);
      throw new ApiError(response.status, detail, response.headers.get("Retry-After"));
    }
    return response.json();
  }

  // ---- small DOM helpers (text only) --------------------------------------------------------

  function cell(tag, text, className) {
    const node = document.createElement(tag);
    node.textContent = text === null || text === undefined ? "" : String(text);
    if (className) node.className = className;
    return node;
  }

  function row(cells, attributes = {}) {
    const tr = document.createElement("tr");
    for (const [name, value] of Object.entries(attributes)) tr.setAttribute(name, String(value));
    tr.append(...cells);
    return tr;
  }

  function emptyRow(tbody, columns, text) {
    const td = cell("td", text, "empty");
    td.colSpan = columns;
    tbody.replaceChildren(row([td]));
  }

  function formatNumber(value) {
    return typeof value === "number" && Number.isFinite(value) ? numberFormat.format(value) : "–";
  }

  function formatSigned(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "–";
    return value > 0 ? `+${numberFormat.format(value)}` : numberFormat.format(value);
  }

  function formatTime(value) {
    if (!value) return "–";
    const moment = new Date(value);
    if (Number.isNaN(moment.getTime())) return String(value);
    return `${moment.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  }

  function setFigure(id, value) {
    const node = $(id);
    node.textContent = formatNumber(value);
    node.dataset.value = value === null || value === undefined ? "" : String(value);
  }

  function pick(entry, ...names) {
    for (const name of names) {
      if (entry && entry[name] !== undefined && entry[name] !== null) return entry[name];
    }
    return undefined;
  }

  function showError(message) {
    const banner = $("error");
    banner.textContent = message;
    banner.hidden = !message;
  }

  function showSectionError(id, error) {
    const node = $(id);
    if (!error) {
      node.textContent = "";
      node.hidden = true;
      return;
    }
    node.textContent = error instanceof ApiError ? error.describe() : String(error);
    node.hidden = false;
  }

  // Runs a section's loader; a 401/403 anywhere signs out, other failures stay in the section.
  async function guarded(sectionErrorId, loader) {
    const generation = state.generation;
    try {
      await loader(generation);
      if (generation === state.generation) showSectionError(sectionErrorId, null);
    } catch (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.signsOut) {
        signOut(error.describe());
        return;
      }
      showSectionError(sectionErrorId, error);
    }
  }

  // ---- time window ----------------------------------------------------------------------------

  function utcDay(moment) {
    return moment.toISOString().slice(0, 10);
  }

  function activityWindow() {
    const now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const start = new Date(today - (ACTIVITY_DAYS - 1) * 86400000);
    const days = [];
    for (let i = 0; i < ACTIVITY_DAYS; i += 1) days.push(utcDay(new Date(start.getTime() + i * 86400000)));
    return { from: start.toISOString(), to: now.toISOString(), days };
  }

  // ---- balance --------------------------------------------------------------------------------

  async function loadBalance(generation) {
    const body = await api("/v1/credits/balance");
    if (generation !== state.generation) return;
    $("account-id").textContent = body.accountId ?? "";
    setFigure("balance", body.balance);
    setFigure("available", body.available);
    setFigure("reserved", body.reserved);
    setFigure("scheduled", body.scheduled ?? 0);
    setFigure("overage", body.overage ?? 0);
    setFigure("granted-total", body.grantedTotal);
    setFigure("consumed-total", body.consumedTotal);
    $("reset-at").textContent = body.resetAt ? formatTime(body.resetAt) : "no subscription";
    $("last-updated").textContent = formatTime(body.lastUpdated);
    $("ledger-seq").textContent = body.ledgerSeq === undefined ? "–" : `#${body.ledgerSeq}`;
    const tbody = $("buckets-body");
    const buckets = Array.isArray(body.buckets) ? body.buckets : [];
    if (!buckets.length) {
      emptyRow(tbody, 3, "No credits granted yet.");
      return;
    }
    tbody.replaceChildren(
      ...buckets.map((bucket) =>
        row(
          [
            rowHeader(bucket.kind),
            cell("td", formatNumber(bucket.amount), "num"),
            cell("td", formatNumber(bucket.balance), "num"),
          ],
          { "data-testid": "bucket-row", "data-kind": bucket.kind ?? "" },
        ),
      ),
    );
  }

  function rowHeader(text) {
    const th = cell("th", text);
    th.scope = "row";
    return th;
  }

  // ---- activity chart -------------------------------------------------------------------------

  function svg(tag, attributes = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  }

  function svgText(x, y, text, attributes = {}) {
    const node = svg("text", { x, y, ...attributes });
    node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function drawActivity(days, byDay) {
    const width = 760;
    const height = 260;
    const margin = { top: 12, right: 12, bottom: 36, left: 48 };
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const slot = plotWidth / days.length;
    const barWidth = Math.max(2, (slot - 4) / 2);
    const peak = niceMax(Math.max(0, ...[...byDay.values()].flatMap((d) => [d.credits, d.scans])));
    const y = (value) => margin.top + plotHeight - (Math.max(0, value) / peak) * plotHeight;

    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "activity-chart-title activity-chart-desc",
      "data-testid": "activity-svg",
      preserveAspectRatio: "xMidYMid meet",
    });
    const title = svg("title", { id: "activity-chart-title" });
    title.textContent = "Credits and billable calls per UTC day";
    const desc = svg("desc", { id: "activity-chart-desc" });
    const active = days.filter((day) => byDay.has(day));
    desc.textContent = active.length
      ? active.map((day) => `${day}: ${byDay.get(day).credits} credits, ${byDay.get(day).scans} calls`).join("; ")
      : "No billable activity in the period.";
    chart.append(title, desc);

    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 4; i += 1) {
      const value = (peak * i) / 4;
      const lineY = y(value);
      grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: lineY, y2: lineY }));
      grid.append(
        svgText(margin.left - 6, lineY + 4, numberFormat.format(Math.round(value * 100) / 100), {
          class: "axis-label",
          "text-anchor": "end",
        }),
      );
    }
    chart.append(grid);

    const bars = svg("g", { class: "bars" });
    days.forEach((day, index) => {
      const x = margin.left + index * slot + 2;
      if (index % 5 === 0 || index === days.length - 1) {
        bars.append(
          svgText(x + slot / 2 - 2, height - margin.bottom + 16, day.slice(5), {
            class: "axis-label",
            "text-anchor": "middle",
          }),
        );
      }
      const figures = byDay.get(day);
      if (!figures) return;
      const group = svg("g", {
        class: "day",
        "data-testid": "activity-day",
        "data-day": day,
        "data-credits": figures.credits,
        "data-scans": figures.scans,
      });
      const tip = svg("title");
      tip.textContent = `${day}: ${figures.credits} credits, ${figures.scans} billable calls, ${figures.refunds} refunds`;
      group.append(tip);
      group.append(
        svg("rect", {
          class: "bar credits",
          "data-testid": "activity-bar-credits",
          x,
          y: y(figures.credits),
          width: barWidth,
          height: Math.max(0, margin.top + plotHeight - y(figures.credits)),
        }),
        svg("rect", {
          class: "bar scans",
          "data-testid": "activity-bar-scans",
          x: x + barWidth,
          y: y(figures.scans),
          width: barWidth,
          height: Math.max(0, margin.top + plotHeight - y(figures.scans)),
        }),
      );
      bars.append(group);
    });
    chart.append(bars);
    chart.append(
      svg("line", {
        class: "axis",
        x1: margin.left,
        x2: width - margin.right,
        y1: margin.top + plotHeight,
        y2: margin.top + plotHeight,
      }),
    );
    $("activity-chart").replaceChildren(chart);

    const credits = active.reduce((sum, day) => sum + byDay.get(day).credits, 0);
    const scans = active.reduce((sum, day) => sum + byDay.get(day).scans, 0);
    $("activity-summary").textContent =
      `${numberFormat.format(credits)} credits over ${numberFormat.format(scans)} billable calls ` +
      `on ${active.length} active day${active.length === 1 ? "" : "s"}.`;
  }

  async function loadActivity(generation) {
    const window_ = activityWindow();
    $("activity-range").textContent = `(${window_.days[0]} to ${window_.days[window_.days.length - 1]}, UTC)`;
    const body = await api("/v1/credits/activity", { from: window_.from, to: window_.to });
    if (generation !== state.generation) return;
    const rows = Array.isArray(body.days) ? body.days : Array.isArray(body.data) ? body.data : [];
    const inWindow = new Set(window_.days);
    const byDay = new Map();
    for (const entry of rows) {
      const day = String(entry.day ?? "").slice(0, 10);
      if (!inWindow.has(day)) continue;
      const figures = {
        credits: Number(entry.credits ?? 0),
        scans: Number(entry.scans ?? 0),
        refunds: Number(entry.refunds ?? 0),
      };
      if (figures.credits !== 0 || figures.scans !== 0) byDay.set(day, figures);
    }
    drawActivity(window_.days, byDay);
  }

  // ---- usage ----------------------------------------------------------------------------------

  async function loadUsage(generation) {
    const window_ = activityWindow();
    const body = await api("/v1/usage", { group_by: "endpoint", from: window_.from, to: window_.to });
    if (generation !== state.generation) return;
    const rows = Array.isArray(body.rows) ? body.rows : Array.isArray(body.data) ? body.data : [];
    const tbody = $("usage-body");
    if (!rows.length) {
      emptyRow(tbody, 5, "No requests in the period.");
      return;
    }
    tbody.replaceChildren(
      ...rows.map((entry) => {
        const key = pick(entry, "key", "endpoint") ?? "";
        return row(
          [
            rowHeader(key),
            cell("td", formatNumber(pick(entry, "requests")), "num requests"),
            cell("td", formatNumber(pick(entry, "successfulRequests", "successful_requests")), "num"),
            cell("td", formatNumber(pick(entry, "failedRequests", "failed_requests")), "num"),
            cell("td", formatNumber(pick(entry, "credits")), "num"),
          ],
          { "data-testid": "usage-row", "data-key": key, "data-requests": pick(entry, "requests") ?? "" },
        );
      }),
    );
  }

  // ---- ledger ---------------------------------------------------------------------------------

  async function loadLedger(generation) {
    const query = state.ledgerPages[state.ledgerIndex];
    const pager = [$("ledger-prev"), $("ledger-next")];
    for (const button of pager) button.disabled = true;
    const body = await api("/v1/credits/ledger", { limit: LEDGER_LIMIT, ...query });
    if (generation !== state.generation) return;
    const entries = Array.isArray(body.data) ? body.data : [];
    const tbody = $("ledger-body");
    if (!entries.length) {
      emptyRow(tbody, 7, "No ledger entries.");
    } else {
      tbody.replaceChildren(
        ...entries.map((entry) => {
          const seq = pick(entry, "seq");
          const delta = pick(entry, "delta");
          const metadata = entry.metadata && typeof entry.metadata === "object" ? entry.metadata : {};
          const deltaCell = cell("td", formatSigned(delta), `num ${delta < 0 ? "negative" : "positive"}`);
          return row(
            [
              cell("td", seq, "num"),
              cell("td", formatTime(pick(entry, "occurred_at", "occurredAt"))),
              cell("td", pick(entry, "reason") ?? ""),
              deltaCell,
              cell("td", formatNumber(pick(entry, "balance_after", "balanceAfter")), "num"),
              cell("td", pick(entry, "source") ?? "", "source"),
              cell("td", metadata.endpoint ?? ""),
            ],
            { "data-testid": "ledger-row", "data-seq": seq ?? "" },
          );
        }),
      );
    }
    const hasMore = Boolean(pick(body, "hasMore", "has_more"));
    const nextCursor = pick(body, "nextCursor", "next_cursor");
    const pageNumber = state.ledgerIndex + 1;
    state.ledgerNext = hasMore ? (nextCursor ? { cursor: nextCursor } : { page: pageNumber + 1 }) : null;
    $("ledger-page").textContent = `Page ${pageNumber}`;
    $("ledger-page").dataset.page = String(pageNumber);
    $("ledger-prev").disabled = state.ledgerIndex === 0;
    $("ledger-next").disabled = state.ledgerNext === null;
  }

  function ledgerNext() {
    if (!state.ledgerNext) return;
    state.ledgerPages = state.ledgerPages.slice(0, state.ledgerIndex + 1);
    state.ledgerPages.push(state.ledgerNext);
    state.ledgerIndex += 1;
    guarded("ledger-error", loadLedger);
  }

  function ledgerPrevious() {
    if (state.ledgerIndex === 0) return;
    state.ledgerIndex -= 1;
    guarded("ledger-error", loadLedger);
  }

  // ---- sign in / out --------------------------------------------------------------------------

  function showDashboard(visible) {
    $("dashboard").hidden = !visible;
    $("account-bar").hidden = !visible;
    $("signin").hidden = visible;
  }

  function loadAll() {
    showError("");
    guarded("activity-error", loadActivity);
    guarded("usage-error", loadUsage);
    guarded("ledger-error", loadLedger);
    return guarded("balance-error", loadBalance);
  }

  async function signIn(key) {
    state.generation += 1;
    state.key = key;
    const generation = state.generation;
    try {
      await loadBalance(generation);
    } catch (error) {
      if (generation !== state.generation) return;
      state.key = null;
      sessionStorage.removeItem(KEY_STORAGE);
      showDashboard(false);
      showError(error instanceof ApiError ? error.describe() : String(error));
      $("api-key").focus();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    showError("");
    showDashboard(true);
    state.ledgerPages = [{ page: 1 }];
    state.ledgerIndex = 0;
    guarded("activity-error", loadActivity);
    guarded("usage-error", loadUsage);
    guarded("ledger-error", loadLedger);
  }

  function signOut(message) {
    state.generation += 1;
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    for (const id of ["buckets-body", "usage-body", "ledger-body", "activity-chart"]) {
      $(id).replaceChildren();
    }
    showDashboard(false);
    showError(message || "");
    $("api-key").focus();
  }

  function start() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) {
        showError("Enter your API key to sign in.");
        $("api-key").focus();
        return;
      }
      signIn(key);
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("refresh").addEventListener("click", () => loadAll());
    $("ledger-next").addEventListener("click", ledgerNext);
    $("ledger-prev").addEventListener("click", ledgerPrevious);
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
