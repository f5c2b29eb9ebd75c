// The car catalog: a gallery of thumbnails, and CSV imports with their per-row report.
import {
  api, ApiError, h, field, message, showError, table, formatDate, formatNumber, pageTitle, busy,
  route, navigate, isAdmin,
} from "./app.js";

const PAGE = 24;
const POLL_MS = 700;
// The gallery's columns (cars.css): 2 up to 1000 px wide, then 3 in a <main> of at most
// 1280 px. `sizes` must say the same, or a phone would pick the 1024 px rendition.
const SIZES = "(max-width: 600px) calc((100vw - 36px) / 2), (max-width: 1000px) calc((100vw - 56px) / 2), "
  + "(max-width: 1280px) calc((100vw - 72px) / 3), 403px";
const COUNTS = [
  ["rows", "Rows"], ["created", "Created"], ["updated", "Updated"], ["unchanged", "Unchanged"],
  ["skipped", "Skipped"], ["superseded", "Superseded"], ["deleted", "Deleted"],
  ["images_fetched", "Images fetched"], ["images_reused", "Images reused"],
  ["images_kept", "Images kept"], ["images_failed", "Images failed"],
];
const ACTION_KIND = { created: "ok", updated: "ok", unchanged: "", skipped: "bad", superseded: "warn", deleted: "warn" };
const IMAGE_KIND = { fetched: "ok", reused: "ok", kept: "", failed: "bad", none: "" };

// ---------------------------------------------------------------- the gallery

/** "url 320w, url 1024w" from the variants that have this format; one candidate when both
 *  are the same picture (a small original is never upscaled, so web may equal mobile). */
function srcset(images, format) {
  const candidates = [];
  for (const variant of [images.mobile, images.web]) {
    const url = variant[format];
    if (url && !candidates.some((c) => c.url === url || c.width === variant.width)) candidates.push({ url, width: variant.width });
  }
  return candidates.map((c) => `${c.url} ${c.width}w`).join(", ");
}

function picture(car) {
  const { images } = car;
  const sources = ["avif", "webp"]
    .filter((format) => images.web[format] || images.mobile[format])
    .map((format) => h("source", { type: `image/${format}`, srcset: srcset(images, format), sizes: SIZES }));
  return h("picture", {}, sources,
    h("img", {
      src: images.mobile.jpeg, srcset: srcset(images, "jpeg"), sizes: SIZES, alt: car.title,
      loading: "lazy", decoding: "async", width: images.web.width, height: images.web.height,
    }));
}

function noPicture(car) {
  if (car.image_status === "failed") {
    return h("div", { class: "broken" },
      h("p", {}, h("strong", {}, "Image failed"), h("span", { class: "reason" }, car.image_error || "No reason was given.")));
  }
  if (car.image_status === "pending") return h("div", { class: "noimage" }, h("p", {}, "The image is being fetched…"));
  return h("div", { class: "noimage" }, h("p", {}, "No image"));
}

const STATUS = { ready: ["ok", "Image ready"], failed: ["bad", "Image failed"], pending: ["warn", "Image pending"], none: ["", "No image"] };

function card(car) {
  const [kind, label] = STATUS[car.image_status] || ["", car.image_status];
  return h("li", { class: `car ${car.image_status}`, dataset: { carId: car.id } },
    car.images ? picture(car) : noPicture(car),
    h("div", { class: "body" },
      h("h3", {}, car.title),
      car.description ? h("p", { class: "description" }, car.description) : null,
      h("p", { class: "meta" }, h("span", { class: `badge ${kind}` }, label),
        car.images ? h("span", {}, `${car.images.width} × ${car.images.height} px`) : null)));
}

function filters(query) {
  const form = h("form", { class: "row cars-filters", role: "search", "aria-label": "Find cars" },
    field("Search title and description", "search", { type: "search", value: query.get("search") || "" }),
    field("Images", "has_image", {
      value: query.get("has_image") || "",
      options: [["", "All cars"], ["true", "With an image"], ["false", "Without an image"]],
    }),
    field("Order", "ordering", {
      value: query.get("ordering") || "-created_at",
      options: [["-created_at", "Newest first"], ["created_at", "Oldest first"], ["title", "Title A–Z"], ["-title", "Title Z–A"]],
    }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
    navigate(`#/cars?${params}`);
  });
  return form;
}

function pager(query, data) {
  const offset = Number(query.get("offset") || 0);
  const go = (to) => {
    const params = new URLSearchParams(query);
    if (to > 0) params.set("offset", to); else params.delete("offset");
    navigate(`#/cars?${params}`);
  };
  const last = Math.min(offset + data.items.length, data.total);
  return h("div", { class: "pager" },
    h("button", { type: "button", class: "quiet", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - PAGE)) }, "Previous"),
    h("span", {}, `${formatNumber(offset + 1)}–${formatNumber(last)} of ${formatNumber(data.total)}`),
    h("button", { type: "button", class: "quiet", disabled: last >= data.total, onclick: () => go(offset + PAGE) }, "Next"));
}

async function loadGallery(out, query) {
  const data = await api.get("/api/v1/cars", {
    search: query.get("search"), has_image: query.get("has_image"),
    ordering: query.get("ordering") || "-created_at,-id", limit: PAGE, offset: query.get("offset") || 0,
  });
  if (!data.items.length) {
    out.replaceChildren(message(query.get("search") || query.get("has_image") ? "No cars match." : "No cars yet."));
    return;
  }
  const failed = data.items.filter((c) => c.image_status === "failed").length;
  out.replaceChildren(
    h("h2", { id: "gallery-title" }, `Gallery (${formatNumber(data.total)} ${data.total === 1 ? "car" : "cars"})`),
    failed ? message(`${failed} of the cars on this page have a broken image; each says why.`, "info") : null,
    h("ul", { class: "gallery cars-gallery", "aria-labelledby": "gallery-title" }, data.items.map(card)),
    data.total > PAGE ? pager(query, data) : null);
  // Images still being fetched: look again soon, while this page is still the one shown.
  if (data.items.some((c) => c.image_status === "pending")) {
    const hash = location.hash;
    setTimeout(() => {
      if (out.isConnected && location.hash === hash) loadGallery(out, query).catch((e) => showError(out, e));
    }, 3000);
  }
}

async function renderGallery(main, _params, query) {
  const out = h("div", { class: "cars-out" }, h("p", { class: "loading" }, "Loading cars…"));
  main.replaceChildren(
    h("div", { class: "cars-head" }, pageTitle("Cars"),
      isAdmin() ? h("a", { class: "button-link", href: "#/cars/import" }, "Import cars") : null),
    filters(query), out);
  try {
    await loadGallery(out, query);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw error;
    showError(out, error);
  }
}

// ---------------------------------------------------------------- imports

function problemsText(entry) {
  if (entry.action === "superseded") return `Row ${entry.by_row} has the same title and wins.`;
  if (entry.action === "deleted") return "Not in the CSV any more (sync).";
  return (entry.problems || []).map((p) => (p.column ? `${p.column}: ${p.reason}` : p.reason)).join("; ");
}

function badge(text, kind) {
  return text ? h("span", { class: `badge ${kind || ""}` }, text) : "";
}

function report(record) {
  const counts = record.counts || {};
  const rows = (record.report || []).map((e) => [
    e.row === null || e.row === undefined ? "—" : String(e.row),
    e.car_id ? h("a", { href: `#/cars?search=${encodeURIComponent(e.title || "")}` }, e.title || "") : e.title || "",
    badge(e.action, ACTION_KIND[e.action]),
    badge(e.image, IMAGE_KIND[e.image]),
    problemsText(e),
  ]);
  return h("div", { class: "import-report" },
    h("h3", {}, "Counts"),
    h("dl", { class: "stats" }, COUNTS.filter(([key]) => key in counts).map(([key, label]) =>
      h("div", { class: "stat" }, h("dt", { class: "label" }, label), h("dd", { class: "value" }, formatNumber(counts[key]))))),
    h("h3", {}, "Row by row"),
    table(`Report of import ${record.id}`, ["Row", "Title", "Action", "Image", "Problems"], rows,
      { empty: "The CSV had no rows." }));
}

function recordView(record) {
  const title = h("h2", {}, `Import ${record.id}: ${record.status}`);
  const source = record.source === "upload" ? "an uploaded CSV" : record.source;
  const head = h("p", { class: "import-meta" },
    `Import ${record.id} of ${source}${record.sync ? " (sync)" : ""}, started ${formatDate(record.created_at)}`,
    record.finished_at ? `, finished ${formatDate(record.finished_at)}.` : ".");
  if (record.status === "running") {
    return h("div", { class: "card import-record", "aria-busy": "true" }, title, head,
      message("The import is running: the report shows here when it is done."),
      h("progress", { "aria-label": "Import running" }));
  }
  if (record.status === "failed") {
    return h("div", { class: "card import-record" }, title, head,
      message(`The import failed, and no car was changed: ${record.error || "no reason was given."}`, "error"));
  }
  const counts = record.counts || {};
  const bad = (counts.skipped || 0) + (counts.images_failed || 0);
  return h("div", { class: "card import-record" }, title, head,
    message(`The import is done: ${formatNumber(counts.rows || 0)} rows, ${formatNumber(counts.created || 0)} created, `
      + `${formatNumber(counts.updated || 0)} updated${bad ? `, ${formatNumber(bad)} with problems (see below)` : ""}.`,
    bad ? "info" : "ok"),
    report(record));
}

/** Show import `id` in `out`, asking again until it is done, while `out` is on the page. */
async function follow(out, id) {
  for (;;) {
    const record = await api.get(`/api/v1/cars/imports/${id}`);
    if (!out.isConnected) return;
    out.replaceChildren(recordView(record));
    if (record.status !== "running") return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (!out.isConnected) return;
  }
}

function syncBox(name) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  return h("div", { class: "check" }, h("input", { type: "checkbox", id, name }),
    h("label", { for: id }, "Sync: delete the cars this CSV no longer lists"));
}

function uploadForm(out, done) {
  const progress = h("progress", { max: "1", value: "0", hidden: true, "aria-label": "Upload progress" });
  const submit = h("button", { type: "submit" }, "Upload and import");
  const form = h("form", { class: "card", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload a CSV"),
    h("p", { class: "hint" }, "Columns: title, and optionally description and image (a URL)."),
    field("CSV file", "file", { type: "file", accept: ".csv,text/csv", required: true }),
    syncBox("sync"), progress, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    const sync = form.elements.sync.checked;
    busy(submit, out, async () => {
      progress.hidden = false;
      progress.value = 0;
      try {
        const record = await api.upload(`/api/v1/cars/imports${sync ? "?sync=true" : ""}`, file, {
          contentType: "text/csv", onProgress: (done) => { progress.value = done; },
        });
        form.reset();
        await follow(out, record.id);
        await done();
      } finally {
        progress.hidden = true;
      }
    });
  });
  return form;
}

function urlForm(out, done) {
  const submit = h("button", { type: "submit" }, "Import from the URL");
  const form = h("form", { class: "card", "aria-labelledby": "url-title" },
    h("h2", { id: "url-title" }, "Import from a URL"),
    h("p", { class: "hint" }, "Wharf fetches the CSV itself; internal addresses are refused."),
    field("CSV URL", "url", { type: "url", required: true, placeholder: "https://example.com/cars.csv" }),
    syncBox("sync"), h("div", { class: "actions" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { url: form.elements.url.value.trim(), sync: form.elements.sync.checked };
    busy(submit, out, async () => {
      const record = await api.post("/api/v1/cars/imports", body);
      await follow(out, record.id);
      await done();
    });
  });
  return form;
}

async function recentImports() {
  const data = await api.get("/api/v1/cars/imports", { limit: 10 });
  const rows = data.items.map((r) => [
    h("a", { href: `#/cars/imports/${r.id}` }, `Import ${r.id}`),
    r.source === "upload" ? "Uploaded CSV" : r.source,
    badge(r.status, { done: "ok", failed: "bad", running: "warn" }[r.status]),
    formatDate(r.created_at),
    r.counts && "rows" in r.counts ? `${formatNumber(r.counts.rows)} rows, ${formatNumber(r.counts.skipped + r.counts.images_failed)} with problems` : r.error || "",
  ]);
  return table("The last imports, newest first", ["Import", "Source", "Status", "Started", "Result"], rows,
    { empty: "No imports yet." });
}

function adminsOnly(main, title) {
  main.replaceChildren(pageTitle(title),
    message("Imports need the admin scope: ask an administrator to run them.", "error"),
    h("a", { href: "#/cars" }, "Back to the gallery"));
}

async function renderImport(main) {
  if (!isAdmin()) return adminsOnly(main, "Import cars");
  const out = h("section", { class: "import-out", "aria-live": "polite", "aria-label": "Import result" });
  const recent = h("div", {}, h("p", { class: "loading" }, "Loading imports…"));
  const refresh = async () => {
    try {
      recent.replaceChildren(await recentImports());
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      showError(recent, error);
    }
  };
  main.replaceChildren(
    h("div", { class: "cars-head" }, pageTitle("Import cars"), h("a", { href: "#/cars" }, "Back to the gallery")),
    h("p", {}, "A car's title is its key: a re-import updates cars in place. Bad rows are reported and the others go on."),
    h("div", { class: "import-forms" }, uploadForm(out, refresh), urlForm(out, refresh)),
    out,
    h("h2", {}, "Recent imports"), recent);
  await refresh();
}

async function renderRecord(main, { id }) {
  if (!isAdmin()) return adminsOnly(main, `Import ${id}`);
  const out = h("section", { class: "import-out", "aria-live": "polite", "aria-label": "Import result" },
    h("p", { class: "loading" }, "Loading the import…"));
  main.replaceChildren(
    h("div", { class: "cars-head" }, pageTitle(`Import ${id}`), h("a", { href: "#/cars/import" }, "All imports")), out);
  try {
    await follow(out, id);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw error;
    showError(out, error.status === 404 ? new Error(`There is no import ${id}.`) : error);
  }
}

route("#/cars", renderGallery);
route("#/cars/import", renderImport);
route("#/cars/imports/:id", renderRecord);
