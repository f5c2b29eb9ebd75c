// The factories section: the factories with their summaries, one factory's actual-versus-goal
// chart over a chosen range, and the sprocket types (create, edit, delete).
import {
  route, api, h, field, message, showError, notify, table, formatNumber, pageTitle, busy, ApiError,
  setAddress,
} from "./app.js";

const DAY = 86400;
// Each named range ends just after the factory's last reading, not now: the seed's factories
// stopped reading years ago, and "the last day" of a stopped factory is its last day of data.
const RANGES = [
  ["day", "Day", DAY],
  ["week", "Week", 7 * DAY],
  ["month", "Month", 30 * DAY],
  ["year", "Year", 365 * DAY],
  ["custom", "Custom", null],
];
const BUCKETS = {
  "1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour",
  "6h": "6 hours", "1d": "1 day", "1w": "1 week (weeks start on Monday)",
};
// A chart about 1,000 px wide shows 500 points well; the API picks the bucket that fits.
const MAX_POINTS = 500;
const DIMENSIONS = [
  ["teeth", "Teeth", 10000], ["pitch_diameter", "Pitch diameter", 1000000],
  ["outside_diameter", "Outside diameter", 1000000], ["pitch", "Pitch", 1000000],
];
const CONFLICT = "This was changed by someone else since you opened it.";
let chart = null; // the Chart.js instance on the page, destroyed before the next one

/** Unix seconds as UTC text ("2021-01-21 02:06 UTC"): the API's buckets are UTC-aligned. */
function utc(seconds, { date = false, secs = false } = {}) {
  const iso = new Date(seconds * 1000).toISOString();
  if (date) return iso.slice(0, 10);
  return `${iso.slice(0, secs ? 19 : 16).replace("T", " ")} UTC`;
}

/** Unix seconds as a datetime-local value (read back as UTC: the API takes ISO without offset as UTC). */
function localValue(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16);
}

function percent(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

function subnav(current) {
  const link = (href, text, key) => h("a", { href, "aria-current": key === current ? "page" : null }, text);
  return h("nav", { class: "subnav", "aria-label": "Factories pages" },
    link("#/factories", "Factories", "list"), link("#/factories/sprockets", "Sprocket types", "sprockets"));
}

function num(text) {
  return h("th", { scope: "col", class: "num" }, text);
}

// ---------------------------------------------------------------- the factories

async function renderList(main) {
  const factories = await api.get("/api/v1/factories", { limit: 500, ordering: "id" });
  const rows = factories.items.map((f) => [
    h("a", { href: `#/factories/${f.id}` }, f.name),
    formatNumber(f.readings),
    f.first_time === null ? "—" : utc(f.first_time, { secs: true }),
    f.last_time === null ? "—" : utc(f.last_time, { secs: true }),
    formatNumber(f.actual_total),
    formatNumber(f.goal_total),
    percent(f.attainment),
  ]);
  const list = table("Factories and a summary of their readings",
    ["Factory", num("Readings"), "First reading", "Last reading", num("Actual total"), num("Goal total"), num("Attainment")],
    rows, { empty: "No factories yet." });
  list.classList.add("factory-table");
  main.replaceChildren(pageTitle("Factories"), subnav("list"),
    h("p", { class: "lead" }, "Open a factory to chart its actual production against its goal over time."), list,
    ...(factories.next ? [message(`Showing the first ${factories.items.length} of ${formatNumber(factories.total)} factories.`)] : []));
}

/** A time as a figure: the date, then the time of day on a line of its own. */
function when(seconds) {
  if (seconds === null) return "—";
  const [date, time] = utc(seconds, { secs: true }).split(" ");
  return [date, " ", h("span", { class: "sub" }, `${time} UTC`)];
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function summary(f) {
  return h("section", { "aria-labelledby": "summary-title" },
    h("h2", { id: "summary-title" }, "Summary"),
    h("div", { class: "stats factory-stats" },
      stat("Readings", formatNumber(f.readings)),
      stat("First reading", when(f.first_time)),
      stat("Last reading", when(f.last_time)),
      stat("Actual total", formatNumber(f.actual_total)),
      stat("Goal total", formatNumber(f.goal_total)),
      stat("Attainment", percent(f.attainment))));
}

async function renderFactory(main, { id }, query) {
  if (!/^\d+$/.test(id)) {
    main.replaceChildren(pageTitle("Not found"), subnav(null), message(`There is no factory “${id}”.`, "error"));
    return;
  }
  let factory;
  try {
    factory = await api.get(`/api/v1/factories/${id}`);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    main.replaceChildren(pageTitle("Factory not found"), subnav(null),
      message(`There is no factory ${id}. It may have been deleted.`, "error"), h("a", { href: "#/factories" }, "All factories"));
    return;
  }
  main.replaceChildren(pageTitle(factory.name), subnav(null), summary(factory),
    h("h2", { id: "chart-title" }, "Actual versus goal"),
    factory.last_time === null ? message("No readings yet.") : chartPart(factory, query));
}

function chartPart(factory, query) {
  // Ranges end at the end of the last reading's UTC day: buckets then start on whole hours
  // and days, and no partial bucket at the start of the range dips the chart.
  const end = Math.ceil((factory.last_time + 1) / DAY) * DAY;
  const start = factory.first_time;
  const chosen = RANGES.some(([key]) => key === query.get("range")) ? query.get("range") : "month";
  const radios = RANGES.map(([key, label]) => {
    const inputId = `range-${key}`;
    return h("span", { class: "range" },
      h("input", { type: "radio", name: "range", id: inputId, value: key, checked: key === chosen }),
      h("label", { for: inputId }, label));
  });
  const from = field("From (UTC)", "from", { type: "datetime-local", value: query.get("from") || localValue(Math.max(start, end - DAY)) });
  const to = field("To (UTC)", "to", { type: "datetime-local", value: query.get("to") || localValue(end) });
  const show = h("button", { type: "submit" }, "Show");
  const custom = h("div", { class: "row custom-range" }, from, to, h("div", { class: "field" }, show));
  const bucket = field("Bucket", "bucket", {
    value: query.get("bucket") || "",
    options: [["", "Automatic (fits the chart)"], ...Object.entries(BUCKETS).map(([k, words]) => [k, `${words} (${k})`])],
  });
  const form = h("form", { class: "card chart-controls", "aria-label": "Chart range" },
    h("fieldset", { class: "ranges" }, h("legend", {}, "Range"), radios), bucket, custom);
  const described = h("p", { class: "chart-summary", role: "status", "aria-live": "polite" });
  const canvas = h("canvas", { role: "img", "aria-label": `Actual and goal production of ${factory.name}` });
  const box = h("div", { class: "chart" }, canvas);
  const numbers = h("div", { class: "chart-numbers" });
  const out = h("div", { class: "out" });
  let asked = 0; // only the latest answer is drawn when ranges are clicked quickly

  const current = () => form.querySelector("input[name=range]:checked").value;
  async function load() {
    const range = current();
    custom.hidden = range !== "custom";
    const params = { bucket: bucket.querySelector("select").value };
    if (!params.bucket) params.max_points = MAX_POINTS;
    const state = new URLSearchParams({ range });
    if (range === "custom") {
      params.from = from.querySelector("input").value;
      params.to = to.querySelector("input").value;
      if (!params.from || !params.to) {
        out.replaceChildren(message("Give both ends of the custom range.", "error"));
        return;
      }
      state.set("from", params.from);
      state.set("to", params.to);
    } else {
      const span = RANGES.find(([key]) => key === range)[2];
      params.from = end - span;
      params.to = end;
    }
    if (params.bucket) state.set("bucket", params.bucket);
    setAddress(form, `#/factories/${factory.id}?${state}`);
    const mine = ++asked;
    out.replaceChildren();
    described.textContent = "Loading the chart…";
    try {
      const data = await api.get(`/api/v1/factories/${factory.id}/chart-data`, params);
      if (mine === asked) draw(factory, data, Boolean(params.bucket), { canvas, box, described, numbers });
    } catch (error) {
      if (mine !== asked) return;
      described.textContent = "";
      showError(out, error);
    }
  }
  form.addEventListener("change", (event) => {
    if (event.target.name === "range" || event.target.name === "bucket") load();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(show, out, load);
  });
  load();
  return h("section", { "aria-labelledby": "chart-title" }, form, out, described, box, numbers);
}

function bucketWords(data, explicit) {
  if (!data.bucket) return "Bucket: none, the raw readings (they fit the chart).";
  const how = explicit ? "as chosen" : `chosen by the server so the range fits ${MAX_POINTS} points`;
  return `Bucket: ${BUCKETS[data.bucket]} (${data.bucket}), ${how}.`;
}

function draw(factory, data, explicit, { canvas, box, described, numbers }) {
  if (chart) chart.destroy();
  chart = null;
  const sum = (list) => list.reduce((a, b) => a + b, 0);
  const actual = sum(data.sprocket_production_actual);
  const goal = sum(data.sprocket_production_goal);
  const range = `from ${utc(data.from, { secs: true })} to ${utc(data.to, { secs: true })}`;
  if (!data.points) {
    box.hidden = true;
    numbers.replaceChildren();
    described.replaceChildren(message(`No readings in this range (${range}).`));
    return;
  }
  box.hidden = false;
  const daily = data.bucket === "1d" || data.bucket === "1w";
  const labels = data.time.map((t) => (daily ? utc(t, { date: true }) : utc(t).replace(" UTC", "")));
  // Two-line labels (date, then time) keep the x axis readable at 375 px.
  const axis = labels.map((text) => (daily ? text : text.split(" ")));
  described.replaceChildren(
    h("span", { class: "bucket" }, bucketWords(data, explicit)), " ",
    h("span", { class: "points" }, `${formatNumber(data.points)} points ${range}.`), " ",
    h("span", { class: "totals" }, `In this range: actual ${formatNumber(actual)}, goal ${formatNumber(goal)}, attainment ${goal ? percent(actual / goal) : "—"}.`));
  canvas.setAttribute("aria-label",
    `Line chart of ${factory.name}: actual and goal production, ${data.points} points ${range}. The numbers are in the table below.`);
  if (typeof window.Chart !== "function") {
    box.hidden = true;
    described.append(message("The chart library did not load; the numbers are in the table below.", "error"));
  } else {
    const dense = data.points > 80;
    chart = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: axis,
        datasets: [
          { label: "Actual", data: data.sprocket_production_actual, borderColor: "#1d4ed8", backgroundColor: "rgba(29, 78, 216, .12)", fill: true, pointRadius: dense ? 0 : 3, borderWidth: 2, tension: 0.2 },
          { label: "Goal", data: data.sprocket_production_goal, borderColor: "#c2410c", backgroundColor: "rgba(194, 65, 12, .15)", borderDash: [6, 4], pointRadius: dense ? 0 : 3, borderWidth: 2, stepped: daily ? false : "middle" },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "top" } },
        scales: {
          x: { type: "category", ticks: { maxTicksLimit: 8, maxRotation: 0, autoSkip: true, autoSkipPadding: 16 } },
          y: { beginAtZero: true, title: { display: true, text: data.bucket ? `Sprockets per ${BUCKETS[data.bucket].split(" (")[0]}` : "Sprockets per reading" } },
        },
      },
    });
  }
  const rows = data.time.map((t, i) => [labels[i], formatNumber(data.sprocket_production_actual[i]), formatNumber(data.sprocket_production_goal[i])]);
  numbers.replaceChildren(h("details", {},
    h("summary", {}, `The chart's ${formatNumber(data.points)} points as a table`),
    table(`Actual and goal per ${data.bucket ? BUCKETS[data.bucket].split(" (")[0] : "reading"} (UTC)`, ["Time (UTC)", num("Actual"), num("Goal")], rows)));
  numbers.querySelector(".table-wrap").classList.add("factory-table");
}

// ---------------------------------------------------------------- the sprocket types

function dimensionFields(values = {}) {
  return h("div", { class: "row" }, DIMENSIONS.map(([name, label, max]) =>
    field(label, name, { type: "number", min: 1, max, step: 1, required: true, value: values[name] ?? "" })));
}

function readDimensions(form) {
  const data = new FormData(form);
  return Object.fromEntries(DIMENSIONS.map(([name]) => [name, Number(data.get(name))]));
}

function describe(s) {
  return `teeth ${s.teeth}, pitch diameter ${s.pitch_diameter}, outside diameter ${s.outside_diameter}, pitch ${s.pitch}`;
}

/** A 412 (If-Match is always sent, so a stale version is never a 409 here) in plain words. */
function conflict(out, reload) {
  out.replaceChildren(h("div", { class: "message error", role: "alert" }, CONFLICT, " ",
    h("button", { type: "button", class: "quiet", onclick: reload }, "Reload")));
}

async function renderSprockets(main) {
  let offset = 0;
  const listOut = h("div", { class: "out" });
  const list = h("div", {});
  const editor = h("div", {});

  const addButton = h("button", { type: "submit" }, "Add sprocket type");
  const addOut = h("div", { class: "out" });
  const addForm = h("form", { class: "card", "aria-labelledby": "add-title" },
    h("h2", { id: "add-title" }, "Add a sprocket type"), dimensionFields(), addButton, addOut);
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(addButton, addOut, async () => {
      const made = await api.post("/api/v1/sprockets", readDimensions(addForm));
      addForm.reset();
      addOut.replaceChildren(message(`Sprocket type ${made.id} added (${describe(made)}).`, "ok"));
      offset = 0;
      await load();
    });
  });

  function edit(item) {
    const save = h("button", { type: "submit" }, "Save changes");
    const out = h("div", { class: "out" });
    const form = h("form", { class: "card editing", "aria-labelledby": "edit-title" },
      h("h2", { id: "edit-title" }, `Edit sprocket type ${item.id}`), dimensionFields(item),
      h("div", { class: "actions" }, save, h("button", { type: "button", class: "quiet", onclick: () => editor.replaceChildren() }, "Cancel")), out);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(save, out, async () => {
        try {
          const saved = await api.put(`/api/v1/sprockets/${item.id}`, readDimensions(form), { headers: { "If-Match": `"${item.version}"` } });
          editor.replaceChildren();
          notify(`Sprocket type ${saved.id} saved (${describe(saved)}).`);
          await load();
        } catch (error) {
          if (error instanceof ApiError && error.status === 412) {
            conflict(out, () => reopen(item.id, out));
          } else throw error;
        }
      });
    });
    editor.replaceChildren(form);
    form.querySelector("input").focus();
  }

  async function reopen(id, out) {
    try {
      edit(await api.get(`/api/v1/sprockets/${id}`));
      await load();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        editor.replaceChildren(message(`Sprocket type ${id} was deleted by someone else.`, "error"));
        await load();
      } else showError(out, error);
    }
  }

  function confirmDelete(item) {
    const yes = h("button", { type: "button", class: "danger" }, "Delete it");
    const out = h("div", { class: "out" });
    yes.addEventListener("click", () => busy(yes, out, async () => {
      try {
        await api.del(`/api/v1/sprockets/${item.id}`, { headers: { "If-Match": `"${item.version}"` } });
        editor.replaceChildren();
        notify(`Sprocket type ${item.id} deleted.`);
        await load();
      } catch (error) {
        if (error instanceof ApiError && error.status === 412) conflict(out, () => { editor.replaceChildren(); load(); });
        else if (error instanceof ApiError && error.status === 404) {
          editor.replaceChildren(message(`Sprocket type ${item.id} was already deleted.`));
          await load();
        } else throw error;
      }
    }));
    editor.replaceChildren(h("div", { class: "card editing", role: "group", "aria-labelledby": "delete-title" },
      h("h2", { id: "delete-title" }, `Delete sprocket type ${item.id}?`),
      h("p", {}, `It has ${describe(item)}. This cannot be undone.`),
      h("div", { class: "actions" }, yes, h("button", { type: "button", class: "quiet", onclick: () => editor.replaceChildren() }, "Keep it")), out));
    yes.focus();
  }

  async function load() {
    listOut.replaceChildren();
    let page;
    try {
      page = await api.get("/api/v1/sprockets", { limit: 50, offset, ordering: "-id" });
    } catch (error) {
      showError(listOut, error);
      return;
    }
    const rows = page.items.map((s) => [
      String(s.id), formatNumber(s.teeth), formatNumber(s.pitch_diameter), formatNumber(s.outside_diameter), formatNumber(s.pitch),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "quiet", "aria-label": `Edit sprocket type ${s.id}`, onclick: () => edit(s) }, "Edit"),
        h("button", { type: "button", class: "quiet", "aria-label": `Delete sprocket type ${s.id}`, onclick: () => confirmDelete(s) }, "Delete")),
    ]);
    const shown = table(`Sprocket types, newest first (${formatNumber(page.total)} in all)`,
      ["Id", num("Teeth"), num("Pitch diameter"), num("Outside diameter"), num("Pitch"), "Actions"],
      rows, { empty: "No sprocket types yet." });
    shown.classList.add("factory-table", "sprocket-table");
    const pager = h("div", { class: "pager" },
      h("button", { type: "button", class: "quiet", disabled: !page.previous, onclick: () => { offset = Math.max(0, offset - 50); load(); } }, "Previous page"),
      h("span", {}, page.total ? `${offset + 1}–${offset + page.items.length} of ${formatNumber(page.total)}` : ""),
      h("button", { type: "button", class: "quiet", disabled: !page.next, onclick: () => { offset += 50; load(); } }, "Next page"));
    list.replaceChildren(shown, ...(page.total > 50 ? [pager] : []));
  }

  main.replaceChildren(pageTitle("Sprocket types"), subnav("sprockets"), addForm, editor,
    h("h2", {}, "All sprocket types"), listOut, list);
  await load();
}

// The literal path first: the routes are tried in the order they were registered.
route("#/factories/sprockets", renderSprockets);
route("#/factories/:id", renderFactory);
route("#/factories", renderList);
