// The customer dashboard: plain JS, no dependencies, no build step; charts are SVG drawn here.
// API data only ever reaches the page as text (textContent, createElement, setAttribute): never
// as markup. Sign-in: a dashboard link (`/dashboard#session=<token>`, traded once for a key that
// expires with the link) or a pasted API key; either is kept in session storage for this tab.
"use strict";

(() => {
  const KEY_STORAGE = "creditledger.apiKey";
  const SESSION_STORAGE = "creditledger.sessionExpiresAt";
  const FORECAST_DAYS = 7; // the forecast's rate: net credits charged over the last 7 UTC days
  const GRANT_PAGES = 4; // grants are listed 25 a page: at most 100 open grants are shown
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
    sessionExpiresAt: null, // a dashboard session's end (Date), null for a pasted key
    expiryTimer: null,
    charts: {}, // what each chart last drew, to redraw it at a new width
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
          return state.sessionExpiresAt
            ? `Your dashboard session ended (401): ${this.detail}`
            : `Your API key was not accepted (401): ${this.detail}`;
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

  async function api(path, params = {}, options = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") {
        url.searchParams.set(name, String(value));
      }
    }
    let response;
    try {
      const headers = { Accept: "application/json" };
      if (!options.anonymous) headers.Authorization = `Bearer ${state.key}`;
      if (options.body !== undefined) headers["Content-Type"] = "application/json";
      response = await fetch(url, {
        method: options.method ?? "GET",
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
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

  // Narrow screens show each row as a card of "label: value" lines; the labels are the table's
  // own column headings (page text, never data), copied onto its cells.
  function labelCells(tbody) {
    const table = tbody.closest("table");
    const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const tr of tbody.rows) {
      [...tr.cells].forEach((td, index) => {
        if (headings[index] !== undefined && !td.classList.contains("empty")) {
          td.setAttribute("data-label", headings[index]);
        }
      });
    }
  }

  function formatDay(value) {
    if (!value) return "–";
    const moment = new Date(value);
    if (Number.isNaN(moment.getTime())) return String(value);
    return moment.toISOString().slice(0, 10);
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
    const owed = Number(body.overage ?? 0);
    $("overage").closest(".figure").classList.toggle("owed", owed > 0);
    $("owed-note").hidden = !(owed > 0);
    $("owed-note").textContent = owed > 0
      ? `${numberFormat.format(owed)} credits are owed: calls no spendable credit covered. ` +
        "The next grant that becomes spendable pays them off first."
      : "";
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
    labelCells(tbody);
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

  // A chart is drawn at its container's width in CSS pixels (viewBox = size), so its 12 px text
  // stays 12 px on a phone instead of shrinking with a scaled-down drawing.
  function chartWidth(containerId) {
    const width = Math.floor($(containerId).getBoundingClientRect().width);
    return Math.max(260, width || 760);
  }

  function labelEvery(days, width) {
    return Math.max(1, Math.ceil(days / Math.max(2, Math.floor(width / 70))));
  }

  function drawActivity(days, byDay) {
    state.charts.activity = () => drawActivity(days, byDay);
    const width = chartWidth("activity-chart");
    const height = width < 500 ? 220 : 260;
    const margin = { top: 12, right: 12, bottom: 36, left: 48 };
    const every = labelEvery(days.length, width);
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
      width,
      height,
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
      if ((days.length - 1 - index) % every === 0) {
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
    labelCells(tbody);
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
      labelCells(tbody);
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

  // ---- burn-down and forecast -----------------------------------------------------------------

  // The forecast: at the net rate of the last 7 UTC days (today included), the whole days until
  // the balance reaches zero, counted from today (integers only: ceil(balance * 7 / charged)).
  function forecast(balance, activityRows, todayDay) {
    const today = Date.parse(`${todayDay}T00:00:00Z`);
    const recent = new Set();
    for (let i = 0; i < FORECAST_DAYS; i += 1) recent.add(utcDay(new Date(today - i * 86400000)));
    let charged = 0;
    for (const entry of activityRows) {
      if (recent.has(String(entry.day ?? "").slice(0, 10))) charged += Number(entry.credits ?? 0);
    }
    if (charged <= 0) return { charged, runsOut: null, text: "No usage in the last 7 days." };
    const perDay = numberFormat.format(Math.round((charged / FORECAST_DAYS) * 10) / 10);
    if (balance <= 0) {
      return { charged, runsOut: todayDay,
               text: `Credits have run out (the last 7 days used ${perDay} a day).` };
    }
    const daysLeft = Math.ceil((balance * FORECAST_DAYS) / charged);
    const runsOut = utcDay(new Date(today + daysLeft * 86400000));
    return { charged, runsOut, daysLeft,
             text: `At the last 7 days' rate (${perDay} credits a day), runs out on ${runsOut}.` };
  }

  function drawBurndown(days, outlook) {
    state.charts.burndown = () => drawBurndown(days, outlook);
    const width = chartWidth("burndown-chart");
    const height = width < 500 ? 200 : 240;
    const margin = { top: 14, right: 14, bottom: 32, left: 56 };
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const values = days.map((d) => d.balance);
    const top = niceMax(Math.max(0, ...values));
    const bottom = Math.min(0, ...values) < 0 ? -niceMax(-Math.min(...values)) : 0;
    const x = (index) => margin.left + (days.length === 1 ? 0 : (index / (days.length - 1)) * plotWidth);
    const y = (value) => margin.top + ((top - value) / (top - bottom)) * plotHeight;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
      "aria-labelledby": "burndown-chart-title burndown-chart-desc", "data-testid": "burndown-svg",
    });
    const title = svg("title", { id: "burndown-chart-title" });
    title.textContent = "Balance at the end of each UTC day";
    const desc = svg("desc", { id: "burndown-chart-desc" });
    desc.textContent = days.map((d) => `${d.day}: ${d.balance}`).join("; ");
    chart.append(title, desc);
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 4; i += 1) {
      const value = bottom + ((top - bottom) * i) / 4;
      grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
      grid.append(svgText(margin.left - 6, y(value) + 4, numberFormat.format(Math.round(value)),
                          { class: "axis-label", "text-anchor": "end" }));
    }
    chart.append(grid);
    if (bottom < 0) {
      chart.append(svg("line", { class: "zero", x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0) }));
    }
    const points = days.map((d, i) => `${x(i).toFixed(1)},${y(d.balance).toFixed(1)}`);
    const base = y(Math.max(0, bottom));
    chart.append(svg("path", { class: "area",
      d: `M${x(0).toFixed(1)},${base} L${points.join(" L")} L${x(days.length - 1).toFixed(1)},${base} Z` }));
    chart.append(svg("polyline", { class: "line", points: points.join(" ") }));
    if (outlook.runsOut && outlook.daysLeft) {
      // The trend to zero, as far as the chart reaches (one day's width per day ahead).
      const last = days.length - 1;
      const step = days.length > 1 ? plotWidth / (days.length - 1) : plotWidth;
      const ahead = Math.min(outlook.daysLeft, Math.floor((width - margin.right - x(last)) / step));
      if (ahead > 0) {
        const lastValue = days[last].balance;
        const endValue = lastValue - (lastValue * ahead) / outlook.daysLeft;
        chart.append(svg("line", { class: "trend", x1: x(last), y1: y(lastValue),
                                   x2: x(last) + ahead * step, y2: y(endValue) }));
      }
    }
    const every = labelEvery(days.length, width);
    const marks = svg("g", { class: "points" });
    days.forEach((d, i) => {
      const group = svg("g", { "data-testid": "burndown-day", "data-day": d.day,
                               "data-balance": d.balance, "data-change": d.change });
      const tip = svg("title");
      tip.textContent = `${d.day}: balance ${numberFormat.format(d.balance)} (${formatSigned(d.change)})`;
      group.append(tip, svg("circle", { class: "point", cx: x(i), cy: y(d.balance), r: 2.5 }));
      marks.append(group);
      if ((days.length - 1 - i) % every === 0) {
        marks.append(svgText(x(i), height - margin.bottom + 18, d.day.slice(5),
                             { class: "axis-label", "text-anchor": "middle" }));
      }
    });
    chart.append(marks);
    $("burndown-chart").replaceChildren(chart);
  }

  async function loadBurndown(generation) {
    const window_ = activityWindow();
    $("burndown-range").textContent = `(${window_.days[0]} to ${window_.days[window_.days.length - 1]}, UTC, by event time)`;
    const [history, activity, balance] = await Promise.all([
      api("/v1/credits/balance/daily", { days: ACTIVITY_DAYS }),
      api("/v1/credits/activity", { from: window_.from, to: window_.to }),
      api("/v1/credits/balance"),
    ]);
    if (generation !== state.generation) return;
    const days = (Array.isArray(history.days) ? history.days : []).map((d) => ({
      day: String(d.day).slice(0, 10), balance: Number(d.balance ?? 0), change: Number(d.change ?? 0),
    }));
    const rows = Array.isArray(activity.days) ? activity.days : [];
    const outlook = forecast(Number(balance.balance ?? 0), rows, window_.days[window_.days.length - 1]);
    const node = $("forecast");
    node.textContent = outlook.text;
    node.dataset.runsOut = outlook.runsOut ?? "";
    node.dataset.charged7d = String(outlook.charged);
    node.classList.toggle("urgent", Boolean(outlook.daysLeft !== undefined && outlook.daysLeft <= 7) ||
                                    outlook.runsOut === window_.days[window_.days.length - 1]);
    drawBurndown(days, outlook);
  }

  // ---- grants ---------------------------------------------------------------------------------

  function drawdownKey(grant) {
    const expires = grant.schedule && grant.schedule.expiresAt ? Date.parse(grant.schedule.expiresAt) : Infinity;
    return [Number(grant.priority ?? 0), expires, Number(grant.grantedSeq ?? 0)];
  }

  function compareKeys(a, b) {
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
  }

  // The contract's drawdown order (lowest priority, then soonest expiry, then oldest), over the
  // grants with credit spendable now; explain's order replaces it when the server has explain.
  function ruleOrder(grants) {
    const now = Date.now();
    const open = grants.filter((g) => g.state === "active" && Number(g.remaining) > 0 &&
      (!g.schedule || !g.schedule.effectiveAt || Date.parse(g.schedule.effectiveAt) <= now));
    open.sort((a, b) => compareKeys(drawdownKey(a), drawdownKey(b)));
    const order = new Map();
    open.forEach((g, i) => {
      const expires = g.schedule && g.schedule.expiresAt ? `expires ${formatDay(g.schedule.expiresAt)}` : "never expires";
      order.set(g.id, { drawOrder: i + 1, why: `priority ${g.priority}, ${expires}, grant #${g.grantedSeq}` });
    });
    return order;
  }

  async function explainOrder() {
    try {
      const body = await api("/v1/credits/balance/explain");
      if (!body || !Array.isArray(body.grants)) return null;
      const order = new Map();
      for (const g of body.grants) {
        if (g && g.grantId !== undefined) order.set(g.grantId, { drawOrder: g.drawOrder, why: g.why ?? "" });
      }
      return order;
    } catch (error) {
      if (error instanceof ApiError && error.signsOut) throw error;
      return null; // no explain on this server (404) or it failed: the rule's order instead
    }
  }

  async function loadGrants(generation) {
    const grants = [];
    let next = null;
    for (let page = 0; page < GRANT_PAGES; page += 1) {
      const body = await api("/v1/credits/grants", { next_page: next });
      if (generation !== state.generation) return;
      grants.push(...(Array.isArray(body.data) ? body.data : []));
      next = body.nextPage;
      if (!next) break;
    }
    const explained = await explainOrder();
    if (generation !== state.generation) return;
    const order = explained ?? ruleOrder(grants);
    $("grants-basis").textContent = explained
      ? "Order and reasons from GET /v1/credits/balance/explain."
      : "Drawn lowest priority first, then soonest expiry, then oldest grant.";
    $("grants-basis").dataset.source = explained ? "explain" : "rule";
    const tbody = $("grants-body");
    if (!grants.length) {
      emptyRow(tbody, 8, "No open grants.");
      return;
    }
    const place = (g) => (order.get(g.id) && Number.isFinite(order.get(g.id).drawOrder) ? order.get(g.id).drawOrder : Infinity);
    const sorted = [...grants].sort((a, b) => place(a) - place(b) || compareKeys(drawdownKey(a), drawdownKey(b)));
    tbody.replaceChildren(...sorted.map((g) => {
      const known = order.get(g.id);
      const drawOrder = known && Number.isFinite(known.drawOrder) ? known.drawOrder : null;
      const why = known ? known.why : g.state === "scheduled" ? "scheduled: not spendable yet" : "not drawn now";
      const schedule = g.schedule ?? {};
      return row([
        cell("td", drawOrder ?? "–", "num order"),
        cell("td", g.name || g.id, "name"),
        cell("td", g.bucket ?? ""),
        cell("td", formatNumber(g.remaining), "num remaining"),
        cell("td", formatNumber(g.amount), "num amount"),
        cell("td", formatDay(schedule.effectiveAt)),
        cell("td", schedule.expiresAt ? formatTime(schedule.expiresAt) : "never", "expires"),
        cell("td", why, "why"),
      ], { "data-testid": "grant-row", "data-grant-id": g.id ?? "", "data-order": drawOrder ?? "",
           "data-remaining": g.remaining ?? "", "data-amount": g.amount ?? "",
           "data-expires-at": schedule.expiresAt ?? "", "data-state": g.state ?? "" });
    }));
    labelCells(tbody);
  }

  // ---- settings and alerts --------------------------------------------------------------------

  function setPair(id, value, none) {
    const node = $(id);
    const present = value !== null && value !== undefined;
    node.textContent = present ? formatNumber(value) : none;
    node.dataset.value = present ? String(value) : "";
  }

  async function loadSettings(generation) {
    const body = await api("/v1/account/settings");
    if (generation !== state.generation) return;
    const reload = body.autoReload;
    setPair("low-threshold", body.lowBalanceThreshold, "off");
    setPair("reload-threshold", reload ? reload.threshold : null, "off");
    setPair("reload-amount", reload ? reload.amount : null, "–");
    setPair("reload-max", reload ? reload.maxPerDay : null, "–");
    setPair("credit-limit", body.creditLimit ?? 0, "0");
  }

  const ALERT_NAMES = {
    low_balance: "Low balance",
    depleted: "Depleted",
    overage: "Owed (overage)",
    auto_reload_requested: "Auto-reload requested",
    grant_expired: "Grant expired",
    credit_limit_exceeded: "Credit limit exceeded",
  };

  function alertDetail(alert) {
    const data = alert.data && typeof alert.data === "object" ? alert.data : {};
    switch (alert.type) {
      case "low_balance":
        return `available ${formatNumber(data.available)}, below ${formatNumber(data.threshold)}`;
      case "depleted":
        return `available ${formatNumber(data.available)}`;
      case "overage":
        return `${formatNumber(data.overage)} credits owed`;
      case "auto_reload_requested":
        return `${formatNumber(data.amount)} credits requested (below ${formatNumber(data.threshold)})`;
      case "grant_expired":
        return `grant ${data.grantId ?? ""}`;
      default:
        return "";
    }
  }

  async function loadAlerts(generation) {
    const body = await api("/v1/account/alerts", { days: ACTIVITY_DAYS });
    if (generation !== state.generation) return;
    const alerts = Array.isArray(body.alerts) ? body.alerts : [];
    const list = $("alerts-list");
    if (!alerts.length) {
      const li = cell("li", "No alerts in the last 30 days.", "empty");
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...alerts.map((alert) => {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "alert-row");
      li.setAttribute("data-type", String(alert.type ?? ""));
      li.setAttribute("data-seq", String(alert.seq ?? ""));
      li.append(
        cell("span", ALERT_NAMES[alert.type] ?? String(alert.type ?? ""), `kind ${String(alert.type ?? "").replace(/[^a-z_]/g, "")}`),
        cell("span", formatTime(alert.at), "when"),
        cell("span", alertDetail(alert), "detail"),
      );
      return li;
    }));
  }

  // ---- sign in / out --------------------------------------------------------------------------

  function showDashboard(visible) {
    $("dashboard").hidden = !visible;
    $("account-bar").hidden = !visible;
    $("signin").hidden = visible;
    $("signing-in").hidden = true;
  }

  const SECTIONS = [
    ["burndown-error", loadBurndown],
    ["grants-error", loadGrants],
    ["settings-error", loadSettings],
    ["alerts-error", loadAlerts],
    ["activity-error", loadActivity],
    ["usage-error", loadUsage],
    ["ledger-error", loadLedger],
  ];

  function loadSections() {
    for (const [errorId, loader] of SECTIONS) guarded(errorId, loader);
  }

  function loadAll() {
    showError("");
    loadSections();
    return guarded("balance-error", loadBalance);
  }

  // A dashboard session ends at its link's expiry: sign out then, rather than at the next 401.
  function armExpiry() {
    clearTimeout(state.expiryTimer);
    state.expiryTimer = null;
    const note = $("session-note");
    if (!state.sessionExpiresAt) {
      note.hidden = true;
      return;
    }
    $("session-expires").textContent = formatTime(state.sessionExpiresAt.toISOString());
    $("session-expires").dataset.value = state.sessionExpiresAt.toISOString();
    note.hidden = false;
    const left_ms = state.sessionExpiresAt.getTime() - Date.now();
    state.expiryTimer = setTimeout(() => {
      signOut(`Your dashboard session ended at ${formatTime(state.sessionExpiresAt.toISOString())}. ` +
              "Open a new sign-in link or paste an API key.");
    }, Math.max(0, left_ms) + 250);
  }

  async function signIn(key, sessionExpiresAt = null) {
    state.generation += 1;
    state.key = key;
    state.sessionExpiresAt = sessionExpiresAt;
    const generation = state.generation;
    try {
      await loadBalance(generation);
    } catch (error) {
      if (generation !== state.generation) return;
      forget();
      showDashboard(false);
      showError(error instanceof ApiError ? error.describe() : String(error));
      $("api-key").focus();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    if (sessionExpiresAt) sessionStorage.setItem(SESSION_STORAGE, sessionExpiresAt.toISOString());
    else sessionStorage.removeItem(SESSION_STORAGE);
    $("api-key").value = "";
    showError("");
    showDashboard(true);
    armExpiry();
    state.ledgerPages = [{ page: 1 }];
    state.ledgerIndex = 0;
    loadSections();
  }

  function forget() {
    state.key = null;
    state.sessionExpiresAt = null;
    clearTimeout(state.expiryTimer);
    state.expiryTimer = null;
    sessionStorage.removeItem(KEY_STORAGE);
    sessionStorage.removeItem(SESSION_STORAGE);
  }

  function signOut(message) {
    state.generation += 1;
    forget();
    state.charts = {};
    for (const id of ["buckets-body", "usage-body", "ledger-body", "activity-chart", "burndown-chart",
                      "grants-body", "alerts-list"]) {
      $(id).replaceChildren();
    }
    showDashboard(false);
    showError(message || "");
    $("api-key").focus();
  }

  // `/dashboard#session=<token>`: the token never left the browser (a fragment is not sent).
  // Drop it from the address bar and history first, then trade it, once, for a key.
  async function signInWithLink(token) {
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    $("signin").hidden = true;
    $("signing-in").hidden = false;
    try {
      const body = await api("/dashboard/session-exchange", {}, {
        method: "POST", body: { token }, anonymous: true,
      });
      await signIn(body.secret, new Date(body.expiresAt));
    } catch (error) {
      showDashboard(false);
      const why = error instanceof ApiError ? `${error.status}: ${error.detail}` : String(error);
      showError(`This sign-in link did not work (${why}). Ask for a new link, or paste an API key.`);
    }
  }

  function linkToken() {
    const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const token = fragment.get("session");
    return token && token.length <= 128 ? token : null;
  }

  function redrawCharts() {
    for (const draw of Object.values(state.charts)) draw();
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
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(redrawCharts, 100);
    });
    const token = linkToken();
    if (token) {
      signInWithLink(token);
      return;
    }
    const saved = sessionStorage.getItem(KEY_STORAGE);
    const savedExpiry = sessionStorage.getItem(SESSION_STORAGE);
    if (saved) {
      // Not the sign-in form while the saved key is checked: it would flash and take typing
      // meant for nothing (signIn shows it again, with the reason, if the key no longer works).
      $("signin").hidden = true;
      signIn(saved, savedExpiry ? new Date(savedExpiry) : null);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
