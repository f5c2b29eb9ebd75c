// The sales section: units of a product per day, the best sellers, the ingested days and
// files, and the upload of a day's file (README "Sales"; routes in wharf/sales/routes.py).
import {
  route, api, h, field, message, table, pageTitle, busy, formatDate, formatNumber, ApiError, setAddress,
} from "./app.js";

const API = "/api/v1/sales";
const PAGE = 20;
// A Chart.js instance keeps a resize observer on its canvas: destroy it with its page.
let charts = [];

function dropCharts() {
  charts.forEach((chart) => chart.destroy());
  charts = [];
}

/** The problem's detail in words. A refused file's only field error repeats its detail,
 *  which ApiError.message would show twice. */
function words(error) {
  const problem = error instanceof ApiError ? error.problem : null;
  if (problem && problem.detail && (problem.errors || []).every((e) => e.msg === problem.detail)) {
    return problem.detail;
  }
  return error.message || String(error);
}

/** replaceChildren, skipping the parts left out (it would show null as text). */
function fill(box, ...parts) {
  box.replaceChildren(...parts.filter((part) => part !== null && part !== undefined));
}

function failed(container, error) {
  container.replaceChildren(message(words(error), "error"));
}

const utc = (iso) => new Date(`${iso}T00:00:00Z`);
const weekday = (iso) => utc(iso).toLocaleDateString(undefined, { weekday: "short", timeZone: "UTC" });
const shortDay = (iso) => utc(iso).toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
const dayCell = (iso) => h("time", { datetime: iso }, `${iso} (${weekday(iso)})`);
const num = (value) => h("span", { class: "num" }, formatNumber(value));

function tabs(current) {
  const pages = [["#/sales", "Product lookup"], ["#/sales/top", "Top products"], ["#/sales/files", "Days and files"]];
  return h("nav", { class: "sales-tabs", "aria-label": "Sales pages" },
    h("ul", {}, pages.map(([href, text]) =>
      h("li", {}, h("a", { href, "aria-current": href === current ? "page" : null }, text)))));
}

function hint(id, text) {
  return h("p", { id, class: "hint" }, text);
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function barChart(box, { labels, values, label, describe, horizontal = false }) {
  const canvas = h("canvas", { role: "img", "aria-label": describe });
  box.replaceChildren(canvas);
  if (!window.Chart) {
    box.replaceChildren(message("The chart library did not load; the numbers are in the table below.", "error"));
    return;
  }
  const count = { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "Units" } };
  charts.push(new window.Chart(canvas, {
    type: "bar",
    data: { labels, datasets: [{ label, data: values, backgroundColor: "#1d4ed8", hoverBackgroundColor: "#1e3a8a", borderRadius: 3, maxBarThickness: 56 }] },
    options: {
      animation: false, // a still chart: nothing moves for people who get dizzy, screenshots are whole
      responsive: true,
      maintainAspectRatio: false,
      indexAxis: horizontal ? "y" : "x",
      plugins: { legend: { display: false } },
      scales: horizontal ? { x: count, y: { type: "category" } } : { x: { type: "category" }, y: count },
    },
  }));
}

/** The query of a page's hash, updated without a new render (the form stays as typed), so
 *  the address can be bookmarked. Replaced, not pushed: Back leaves the page. */
function remember(form, path, values) {
  const query = new URLSearchParams(Object.entries(values).filter(([, v]) => v !== "" && v != null));
  setAddress(form, query.toString() ? `${path}?${query}` : path);
}

/** Run `work` with `button` busy; its error, in words, goes to `out`. */
function run(button, out, work) {
  return busy(button, null, async () => {
    try {
      await work();
    } catch (error) {
      failed(out, error);
    }
  });
}

// ---------------------------------------------------------------- product lookup

route("#/sales", async (main, _params, query) => {
  dropCharts();
  const out = h("div", { class: "sales-result" });
  const submit = h("button", { type: "submit" }, "Look up");
  const form = h("form", { class: "card", "aria-labelledby": "sales-lookup" },
    h("h2", { id: "sales-lookup" }, "Units of a product"),
    h("div", { class: "row" },
      field("Product id", "product", { type: "number", min: 0, step: 1, required: true, value: query.get("product") || "", inputmode: "numeric" }),
      field("Days", "days", { type: "number", min: 1, max: 3660, step: 1, required: true, value: query.get("days") || "7", "aria-describedby": "sales-days-hint" }),
      field("Ending on", "to", { type: "date", value: query.get("to") || "", "aria-describedby": "sales-days-hint" }),
      submit),
    hint("sales-days-hint", "The past N days count back from the day it ends on; left empty, that is the latest day with sales ingested."));
  const look = () => {
    const data = new FormData(form);
    const values = { product: String(data.get("product")).trim(), days: data.get("days"), to: data.get("to") };
    remember(form, "#/sales", values);
    return run(submit, out, () => showProduct(out, values));
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); look(); });
  main.replaceChildren(pageTitle("Sales: product lookup"), tabs("#/sales"), form, out);
  if (query.get("product")) await look();
});

async function showProduct(out, { product, days, to }) {
  out.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  const found = await api.get(`${API}/products/${encodeURIComponent(product)}`, { days, to });
  dropCharts();
  if (!found.by_day.length) {
    out.replaceChildren(message(found.note || "No sales yet."));
    return;
  }
  const best = found.by_day.reduce((a, b) => (b.units > a.units ? b : a));
  const range = `${found.from} to ${found.to}`;
  const box = h("div", { class: "chart" });
  const heading = h("h2", { id: "sales-product-result", tabindex: "-1" }, `Product ${found.product_id}, ${range}`);
  fill(out,
    heading,
    found.note ? message(found.note) : null,
    h("div", { class: "stats" },
      stat(`Units in ${found.days} days`, h("span", { "data-testid": "sales-total" }, formatNumber(found.total))),
      stat("Average per day", formatNumber(found.total / found.days, 1)),
      stat("Best day", best.units ? `${formatNumber(best.units)} on ${shortDay(best.date)}` : "none")),
    box,
    h("details", { class: "sales-numbers" },
      h("summary", {}, "The numbers, day by day"),
      table(`Units of product ${found.product_id} per day, ${range}`, ["Day", h("th", { scope: "col", class: "num" }, "Units")],
        found.by_day.map((d) => [dayCell(d.date), num(d.units)]))),
    oneDay(found));
  barChart(box, {
    labels: found.by_day.map((d) => shortDay(d.date)),
    values: found.by_day.map((d) => d.units),
    label: `Units of product ${found.product_id}`,
    describe: `Bar chart: units of product ${found.product_id} sold per day from ${range}; ${formatNumber(found.total)} in all, most on ${best.date} (${formatNumber(best.units)}).`,
  });
  heading.focus();
}

/** One product on one day: the seed's "productsoldbyday". */
function oneDay(found) {
  const out = h("div", {});
  const submit = h("button", { type: "submit", class: "quiet" }, "Units on this day");
  const form = h("form", { class: "card", "aria-labelledby": "sales-one-day" },
    h("h2", { id: "sales-one-day" }, `Product ${found.product_id} on one day`),
    h("div", { class: "row" }, field("Day", "day", { type: "date", required: true, value: found.to }), submit),
    out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const day = new FormData(form).get("day");
    run(submit, out, async () => {
      const one = await api.get(`${API}/products/${encodeURIComponent(found.product_id)}/days/${day}`);
      out.replaceChildren(message(`Product ${one.product_id} sold ${formatNumber(one.units)} units on ${one.date} (${weekday(one.date)}).`, "ok"));
    });
  });
  return form;
}

// ---------------------------------------------------------------- top products

route("#/sales/top", async (main, _params, query) => {
  dropCharts();
  const out = h("div", { class: "sales-result" });
  const submit = h("button", { type: "submit" }, "Show");
  const form = h("form", { class: "card", "aria-labelledby": "sales-top-form" },
    h("h2", { id: "sales-top-form" }, "Best sellers over a window"),
    h("div", { class: "row" },
      field("Days", "days", { type: "number", min: 1, max: 3660, step: 1, required: true, value: query.get("days") || "7", "aria-describedby": "sales-top-hint" }),
      field("Ending on", "to", { type: "date", value: query.get("to") || "", "aria-describedby": "sales-top-hint" }),
      field("How many products", "limit", { type: "number", min: 1, max: 1000, step: 1, required: true, value: query.get("limit") || "10" }),
      submit),
    hint("sales-top-hint", "Left empty, the window ends on the latest day with sales ingested. Ties go by product id."));
  const show = () => {
    const data = new FormData(form);
    const values = { days: data.get("days"), to: data.get("to"), limit: data.get("limit") };
    remember(form, "#/sales/top", values);
    return run(submit, out, () => showTop(out, values));
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); show(); });
  main.replaceChildren(pageTitle("Sales: top products"), tabs("#/sales/top"), form, out);
  await show();
});

async function showTop(out, values) {
  out.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  const top = await api.get(`${API}/top`, values);
  dropCharts();
  if (!top.items.length) {
    out.replaceChildren(message(top.note || "No product was sold in this window."));
    return;
  }
  const range = `${top.from} to ${top.to}`;
  const shown = top.items.slice(0, 25); // more bars than this are unreadable; the table has all
  const box = h("div", { class: "chart sales-top-chart" });
  box.style.height = `${Math.max(260, shown.length * 28 + 70)}px`;
  const link = (id) => h("a", { href: `#/sales?${new URLSearchParams({ product: id, days: top.days, to: top.to })}` }, `Product ${id}`);
  fill(out,
    h("h2", {}, `Top ${top.items.length} products, ${range} (${top.days} days)`),
    top.note ? message(top.note) : null,
    box,
    table(`Best sellers, ${range}`, ["Rank", "Product", h("th", { scope: "col", class: "num" }, "Units")],
      top.items.map((item, i) => [String(i + 1), link(item.product_id), num(item.units)])));
  barChart(box, {
    labels: shown.map((item) => `Product ${item.product_id}`),
    values: shown.map((item) => item.units),
    label: "Units",
    horizontal: true,
    describe: `Bar chart: the ${shown.length} best-selling products from ${range}; first product ${shown[0].product_id} with ${formatNumber(shown[0].units)} units.`,
  });
}

// ---------------------------------------------------------------- days, files and upload

route("#/sales/files", async (main) => {
  dropCharts();
  const days = h("div", {});
  const files = h("div", {});
  const reload = async (newDay) => {
    await Promise.all([showDays(days, 0, newDay), showFiles(files, 0, "")]);
  };
  main.replaceChildren(pageTitle("Sales: days and files"), tabs("#/sales/files"), uploadForm(reload),
    h("h2", {}, "Ingested days"), days, h("h2", {}, "Files"), files);
  await reload();
});

function pager(label, page, total, move) {
  if (total <= PAGE) return null;
  const last = Math.min(page + PAGE, total);
  return h("nav", { class: "pager", "aria-label": label },
    h("button", { type: "button", class: "quiet", disabled: page === 0, onclick: () => move(Math.max(0, page - PAGE)) }, "Previous"),
    h("span", {}, `${page + 1}–${last} of ${total}`),
    h("button", { type: "button", class: "quiet", disabled: last >= total, onclick: () => move(page + PAGE) }, "Next"));
}

function fileBadge(file) {
  return file.replaced_at
    ? h("span", { class: "badge warn" }, `replaced ${formatDate(file.replaced_at)}`)
    : h("span", { class: "badge ok" }, "current");
}

async function showDays(box, offset, newDay, focus) {
  try {
    const page = await api.get(`${API}/days`, { limit: PAGE, offset });
    const rows = page.items.map((d) => [
      h("span", {}, dayCell(d.date), d.date === newDay ? h("span", { class: "badge ok sales-new" }, "new") : null),
      num(d.units), num(d.transactions), num(d.products),
      h("ul", { class: "sales-day-files" }, d.files.map((f) => h("li", {}, f.name, " ", fileBadge(f)))),
    ]);
    const right = (text) => h("th", { scope: "col", class: "num" }, text);
    fill(box,
      table("The days with sales, newest first", ["Day", right("Units"), right("Transactions"), right("Products"), "Files"], rows,
        { empty: "No days ingested yet: upload a day's file above." }),
      pager("Pages of days", offset, page.total, (to) => showDays(box, to, newDay, true)));
    if (focus) box.querySelector(".table-wrap")?.focus();
  } catch (error) {
    failed(box, error);
  }
}

/** `focus`: after a person's change, where focus goes back to ("select" or the table), as the
 *  re-render replaces the control they used. */
async function showFiles(box, offset, current, focus) {
  const choose = field("Show", "current", {
    value: current,
    options: [["", "All files"], ["true", "Each day's current file"], ["false", "Replaced files"]],
  });
  choose.querySelector("select").addEventListener("change", (e) => showFiles(box, 0, e.target.value, "select"));
  try {
    const page = await api.get(`${API}/files`, { limit: PAGE, offset, current, ordering: "-id" });
    const right = (text) => h("th", { scope: "col", class: "num" }, text);
    const rows = page.items.map((f) => [
      String(f.id), h("time", { datetime: f.day }, f.day), h("span", {}, f.name, " ", fileBadge(f)),
      num(f.lines), num(f.transactions), num(f.units), num(f.products), f.bad_lines ? badLines(f) : num(0),
      h("span", {}, formatDate(f.ingested_at), h("span", { class: "sales-engine" }, `by ${f.engine} in ${formatNumber(f.seconds, 2)} s`)),
    ]);
    fill(box, h("div", { class: "row sales-filter" }, choose),
      h("div", { class: "sales-ledger" }, table("The ledger of ingested files, newest first",
        ["Id", "Day", "File", right("Lines"), right("Transactions"), right("Units"), right("Products"), right("Bad lines"), "Ingested"],
        rows, { empty: current === "false" ? "No file has been replaced." : "No files ingested yet." })),
      pager("Pages of files", offset, page.total, (to) => showFiles(box, to, current, ".table-wrap")));
    if (focus) box.querySelector(focus)?.focus();
  } catch (error) {
    box.replaceChildren(h("div", { class: "row sales-filter" }, choose), message(words(error), "error"));
  }
}

function badLines(file) {
  return h("details", { class: "sales-bad" },
    h("summary", {}, formatNumber(file.bad_lines)),
    h("ul", {}, file.bad_line_sample.map((b) => h("li", {}, `line ${b.line}: ${b.reason}`))));
}

/** The upload: the file is the body as application/x-ndjson; its day is `?date=` (an upload
 *  has no file name for the server to read it from, so the page reads it from the name). */
function uploadForm(reload) {
  const out = h("div", { class: "sales-upload-out" });
  const bar = h("progress", { id: "sales-progress", max: "1", value: "0" });
  const barText = h("span", { id: "sales-progress-text" }, "Not started");
  const progress = h("div", { class: "sales-progress", hidden: true },
    h("label", { for: "sales-progress" }, "Upload progress"), bar, barText);
  const fileField = field("Daily file (JSON lines)", "file", { type: "file", required: true, accept: ".json,.jsonl,.ndjson,.txt,.gz", "aria-describedby": "sales-file-hint" });
  const dayField = field("Day of the sales", "date", { type: "date", required: true });
  const replaceId = "sales-replace";
  const submit = h("button", { type: "submit" }, "Upload");
  const form = h("form", { class: "card", "aria-labelledby": "sales-upload" },
    h("h2", { id: "sales-upload" }, "Upload a daily file"),
    h("div", { class: "row" }, fileField, dayField),
    hint("sales-file-hint", "One transaction per line, like {\"id\": 17, \"products\": [3, 8]}. A name like 20261130_transactions.json gives the day; a gzipped file (.gz) is sent as it is."),
    h("div", { class: "sales-check" },
      h("input", { type: "checkbox", id: replaceId, name: "replace" }),
      h("label", { for: replaceId }, "Replace the day's counts if it already has another file")),
    h("div", { class: "actions" }, submit), progress, out);
  const fileInput = fileField.querySelector("input");
  fileInput.addEventListener("change", () => {
    const match = (fileInput.files[0] && fileInput.files[0].name.match(/^(\d{4})-?(\d{2})-?(\d{2})(?:[_.-]|$)/)) || null;
    if (match) dayField.querySelector("input").value = `${match[1]}-${match[2]}-${match[3]}`;
  });
  const setBar = (fraction, text) => {
    bar.value = fraction;
    barText.textContent = text;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    const data = new FormData(form);
    const query = new URLSearchParams({ date: data.get("date") });
    if (data.get("replace")) query.set("replace", "true");
    out.replaceChildren();
    progress.hidden = false;
    setBar(0, "0%");
    busy(submit, null, async () => {
      try {
        const report = await api.upload(`${API}/files?${query}`, file, {
          contentType: "application/x-ndjson",
          encoding: /\.gz$/i.test(file.name) ? "gzip" : undefined,
          onProgress: (f) => setBar(f, f < 1 ? `${Math.round(f * 100)}%` : "Sent; counting…"),
        });
        setBar(1, "Done");
        out.replaceChildren(uploaded(report, file.name));
        await reload(report.day);
      } catch (error) {
        setBar(0, "Failed");
        failed(out, error);
      }
    });
  });
  return form;
}

function uploaded(report, sent) {
  const again = report.status === "already ingested";
  const facts = [
    ["Day", dayCell(report.day)], ["File sent", sent], ["Recorded as", report.name], ["Bytes", formatNumber(report.bytes)],
    ["Lines", formatNumber(report.lines)], ["Transactions", formatNumber(report.transactions)],
    ["Units", formatNumber(report.units)], ["Products", formatNumber(report.products)],
    ["Bad lines", formatNumber(report.bad_lines)], ["Counted by", `${report.engine} in ${formatNumber(report.seconds, 2)} s`],
    ["Ingested", formatDate(report.ingested_at)],
  ];
  const text = again
    ? `This file was already ingested for ${report.day}; nothing changed.`
    : `Ingested ${report.day}: ${formatNumber(report.units)} units in ${formatNumber(report.transactions)} transactions.`;
  return h("div", { class: "sales-report" },
    message(text, "ok"),
    h("dl", { class: "sales-facts" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
    report.bad_line_sample.length
      ? table("Bad lines (skipped)", ["Line", "Reason"], report.bad_line_sample.map((b) => [String(b.line), b.reason]))
      : null,
    h("p", { class: "actions" },
      h("a", { href: `#/sales/top?${new URLSearchParams({ days: 1, to: report.day })}` }, `Top products of ${report.day}`)));
}
