// The CRM section: the customers table, a customer's page (notes, edit) and the companies.
//
// Lists are the API's own pages: filters, search, ordering and offset are query parameters of
// /customers and /companies, kept in the address (#/crm?status=active&offset=25) so a view can
// be bookmarked and Back steps through it. Nothing is loaded whole and filtered here; only the
// company names (a short lookup list) are fetched, to label the table and fill the pickers.
import {
  api, ApiError, getAll, h, field, message, showError, table, formatDate, formatNumber,
  pageTitle, busy, route, setAddress,
} from "./app.js";

const PAGE = 25;
const NOTES_PAGE = 20;
const STATUSES = ["prospective", "active", "inactive"];
const BADGE = { active: "ok", prospective: "warn", inactive: "" };
const CONFLICT = "This was changed by someone else since you opened it.";
let lastCustomers = "#/crm"; // the list a customer page's back link returns to

// ---------------------------------------------------------------- shared pieces

// A stale If-Match is 412. (A 409 from these routes is a duplicate name: its detail is shown.)
const isConflict = (error) => error instanceof ApiError && error.status === 412;
const ifMatch = (version) => ({ headers: { "If-Match": `"${version}"` } });
const fullName = (c) => `${c.first_name} ${c.last_name}`;
const companies = () => getAll("/api/v1/companies", { ordering: "name" });

function conflict(onReload) {
  return h("div", { class: "message error crm-conflict", role: "alert" },
    h("p", {}, CONFLICT, " Reload to see the current version, then make your change again."),
    h("button", { type: "button", onclick: onReload }, "Reload"));
}

function statusBadge(status) {
  return h("span", { class: `badge ${BADGE[status] || ""}` }, status);
}

function subnav(current, exact = true) {
  const links = [["#/crm", "Customers"], ["#/crm/companies", "Companies"]];
  return h("nav", { class: "crm-nav", "aria-label": "CRM" }, h("ul", {}, links.map(([href, text]) =>
    h("li", {}, h("a", { href, "aria-current": href === current ? (exact ? "page" : "true") : null }, text)))));
}

/** A page's list state, mirrored in the address without re-rendering the whole page
 *  (pushed: Back fires a hashchange, and then the page renders from the address). */
function listState(view, base, query, keys) {
  const state = Object.fromEntries(keys.map((k) => [k, query.get(k) || ""]));
  return {
    state,
    update(changes) {
      Object.assign(state, changes);
      const params = new URLSearchParams();
      for (const k of keys) if (state[k] && !(k === "offset" && state[k] === "0")) params.set(k, state[k]);
      const hash = params.toString() ? `${base}?${params}` : base;
      setAddress(view, hash, { push: true });
      return hash;
    },
  };
}

/** A sortable column header: aria-sort says the order, the button flips it. */
function sortHeader(key, label, ordering, onSort) {
  const now = ordering === key ? "ascending" : ordering === `-${key}` ? "descending" : "none";
  const mark = { ascending: "▲", descending: "▼", none: "↕" }[now];
  return h("th", { scope: "col", "aria-sort": now },
    h("button", { type: "button", dataset: { sort: key }, onclick: () => onSort(now === "ascending" ? `-${key}` : key) },
      label, h("span", { class: "sort-mark", "aria-hidden": "true" }, ` ${mark}`)));
}

function pager(page, noun, go) {
  const from = page.items.length ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  const pages = Math.max(1, Math.ceil(page.total / page.limit));
  const at = Math.floor(page.offset / page.limit) + 1;
  const text = h("span", { class: "pager-text" }, `${formatNumber(from)}–${formatNumber(to)} of ${formatNumber(page.total)} ${noun} · page ${at} of ${pages}`);
  if (pages === 1 && !page.offset) return h("p", { class: "pager" }, text);
  return h("nav", { class: "pager", "aria-label": `Pages of ${noun}` },
    h("button", { type: "button", class: "quiet", disabled: !page.previous, onclick: () => go(Math.max(0, page.offset - page.limit)) }, "Previous"),
    text,
    h("button", { type: "button", class: "quiet", disabled: !page.next, onclick: () => go(page.offset + page.limit) }, "Next"));
}

/** Put a re-rendered list's focus back on the control the person used. */
function refocus(container, selector) {
  if (!selector) return;
  const target = container.querySelector(selector);
  if (target && !target.disabled) target.focus();
}

// ---------------------------------------------------------------- the customers table

async function customersPage(main, _params, query) {
  const { state, update } = listState(main, "#/crm", query, ["company_id", "status", "search", "ordering", "offset"]);
  const list = await companies();
  const names = new Map(list.map((c) => [c.id, c.name]));
  const results = h("div", { class: "crm-results crm-customers", "aria-live": "polite" });

  const form = h("form", { class: "card crm-filters", role: "search", "aria-label": "Filter customers" },
    h("div", { class: "row" },
      field("Company", "company_id", { value: state.company_id, options: [["", "All companies"], ...list.map((c) => [c.id, c.name])] }),
      field("Status", "status", { value: state.status, options: [["", "All statuses"], ...STATUSES.map((s) => [s, s])] }),
      field("Search names", "search", { type: "search", value: state.search, maxlength: 200, placeholder: "e.g. Lovelace" }),
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Search"),
        h("button", { type: "button", class: "quiet", onclick: () => { form.reset(); for (const el of form.elements) if (el.name) el.value = ""; apply(); } }, "Clear"))));
  const apply = () => {
    const data = new FormData(form);
    load({ company_id: data.get("company_id"), status: data.get("status"), search: data.get("search").trim(), offset: "" });
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  form.addEventListener("change", (event) => { if (event.target.tagName === "SELECT") apply(); });

  async function load(changes = {}, focus = null) {
    lastCustomers = update(changes);
    const ordering = state.ordering || "last_name";
    results.setAttribute("aria-busy", "true");
    try {
      const page = await api.get("/api/v1/customers", {
        company_id: state.company_id, status: state.status, search: state.search,
        ordering, limit: PAGE, offset: state.offset || 0,
      });
      results.replaceChildren(...customersList(page, ordering, names, load));
    } catch (error) {
      showError(results, error);
    }
    results.removeAttribute("aria-busy");
    refocus(results, focus);
  }

  main.replaceChildren(subnav("#/crm"), pageTitle("Customers"), form, results);
  await load();
}

function customersList(page, ordering, names, load) {
  const sort = (key) => (value) => load({ ordering: value, offset: "" }, `[data-sort="${key}"]`);
  if (!page.items.length && page.offset > 0) {
    return [message("There are no customers on this page."),
      h("button", { type: "button", onclick: () => load({ offset: "" }) }, "Go to the first page")];
  }
  const cols = [["id", "#"], ["last_name", "Last name"], ["first_name", "First name"], ["company", "Company"], ["status", "Status"], ["created_at", "Added"]];
  const headers = cols.map(([key, label]) => (key === "company" ? label : sortHeader(key, label, ordering, sort(key))));
  const rows = page.items.map((c) => [
    String(c.id),
    h("a", { href: `#/crm/customers/${c.id}`, "aria-label": fullName(c) }, c.last_name),
    c.first_name,
    h("a", { href: `#/crm?company_id=${c.company_id}` }, names.get(c.company_id) || `Company ${c.company_id}`),
    statusBadge(c.status),
    h("time", { datetime: c.created_at }, formatDate(c.created_at)),
  ]);
  const caption = `Customers ${page.items.length ? `${formatNumber(page.offset + 1)}–${formatNumber(page.offset + page.items.length)} ` : ""}of ${formatNumber(page.total)}`;
  const go = (offset) => load({ offset: String(offset) }, offset > page.offset ? ".pager button:last-child" : ".pager button:first-child");
  return [
    table(caption, headers, rows, { empty: "No customers match these filters." }),
    page.total ? pager(page, "customers", go) : null,
  ].filter(Boolean);
}

// ---------------------------------------------------------------- one customer

async function customerPage(main, { id }) {
  let customer;
  try {
    customer = await api.get(`/api/v1/customers/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!(error instanceof ApiError) || (error.status !== 404 && error.status !== 422)) throw error;
    main.replaceChildren(subnav("#/crm", false), pageTitle("Customer not found"),
      message(`There is no customer ${id}: it may have been deleted.`, "error"),
      h("a", { href: lastCustomers }, "Back to the customers"));
    return;
  }
  const list = await companies();
  const names = new Map(list.map((c) => [c.id, c.name]));
  const title = pageTitle(fullName(customer));
  const facts = h("dl", { class: "crm-facts" });
  const show = (c) => {
    title.textContent = fullName(c);
    document.title = `${fullName(c)} · Wharf`;
    facts.replaceChildren(
      h("div", {}, h("dt", {}, "Status"), h("dd", {}, statusBadge(c.status))),
      h("div", {}, h("dt", {}, "Company"), h("dd", {}, h("a", { href: `#/crm?company_id=${c.company_id}` }, names.get(c.company_id) || `Company ${c.company_id}`))),
      h("div", {}, h("dt", {}, "Customer since"), h("dd", {}, formatDate(c.created_at))),
      h("div", {}, h("dt", {}, "Last changed"), h("dd", {}, formatDate(c.updated_at))));
  };
  show(customer);
  main.replaceChildren(
    subnav("#/crm", false), h("p", { class: "crm-back" }, h("a", { href: lastCustomers }, "← All customers")),
    title, facts,
    h("div", { class: "crm-columns" }, notesSection(customer), editSection(customer, list, show)));
}

function editSection(customer, list, show) {
  let current = customer;
  const out = h("div", { class: "out" });
  const save = h("button", { type: "submit" }, "Save changes");
  const inputs = h("div", {});
  const fill = (c) => inputs.replaceChildren(
    h("div", { class: "row" },
      field("First name", "first_name", { value: c.first_name, required: true, maxlength: 100 }),
      field("Last name", "last_name", { value: c.last_name, required: true, maxlength: 100 })),
    h("div", { class: "row" },
      field("Status", "status", { value: c.status, options: STATUSES.map((s) => [s, s]) }),
      field("Company", "company_id", { value: c.company_id, options: list.map((x) => [x.id, x.name]) })));
  const form = h("form", { class: "card", "aria-labelledby": "crm-edit-title" },
    h("h2", { id: "crm-edit-title" }, "Edit customer"), inputs, h("div", { class: "actions" }, save), out);
  fill(current);

  async function reload() {
    try {
      current = await api.get(`/api/v1/customers/${current.id}`);
    } catch (error) {
      showError(out, error);
      return;
    }
    fill(current);
    show(current);
    out.replaceChildren(message("Reloaded: the form shows the current version.", "info"));
    form.querySelector("input").focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      first_name: data.get("first_name").trim(), last_name: data.get("last_name").trim(),
      status: data.get("status"), company_id: Number(data.get("company_id")),
    };
    out.replaceChildren();
    busy(save, out, async () => {
      try {
        current = await api.put(`/api/v1/customers/${current.id}`, body, ifMatch(current.version));
      } catch (error) {
        if (!isConflict(error)) throw error;
        out.replaceChildren(conflict(reload));
        out.querySelector("button").focus();
        return;
      }
      show(current);
      out.replaceChildren(message("Saved.", "ok"));
    });
  });
  return h("section", { class: "crm-edit", "aria-label": "Edit customer" }, form);
}

function notesSection(customer) {
  const path = `/api/v1/customers/${customer.id}/notes`;
  const items = h("ol", { class: "crm-notes" });
  const more = h("div", { class: "crm-more" });
  const count = h("p", { class: "crm-count" });
  const out = h("div", { class: "out" });
  const add = h("button", { type: "submit" }, "Add note");
  let shown = 0;
  let total = 0;

  const note = (n) => h("li", { class: "crm-note" },
    h("p", { class: "crm-note-text" }, n.text),
    h("p", { class: "crm-note-meta" }, h("time", { datetime: n.created_at }, formatDate(n.created_at))));
  const counted = () => {
    count.textContent = total ? `${formatNumber(total)} ${total === 1 ? "note" : "notes"}, newest first.` : "";
    if (!total) items.replaceChildren(h("li", { class: "crm-empty" }, message("No notes yet.")));
  };

  async function older() {
    try {
      const page = await api.get(path, { ordering: "-created_at,-id", limit: NOTES_PAGE, offset: shown });
      if (!shown) items.replaceChildren();
      items.append(...page.items.map(note));
      shown += page.items.length;
      total = page.total;
      counted();
      more.replaceChildren(page.next
        ? h("button", { type: "button", class: "quiet", onclick: (e) => busy(e.target, more, older) }, `Show older notes (${formatNumber(total - shown)} more)`)
        : "");
    } catch (error) {
      showError(more, error);
    }
  }

  const form = h("form", { class: "card", "aria-label": "Add a note" },
    field("New note", "text", { type: "textarea", required: true, maxlength: 10000 }),
    h("div", { class: "actions" }, add), out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = new FormData(form).get("text").trim();
    if (!text) {
      out.replaceChildren(message("Write the note first.", "error"));
      return;
    }
    out.replaceChildren();
    busy(add, out, async () => {
      const made = await api.post(path, { text });
      if (!total) items.replaceChildren();
      items.prepend(note(made));
      shown += 1;
      total += 1;
      counted();
      form.reset();
      out.replaceChildren(message("Note added.", "ok"));
    });
  });
  older();
  return h("section", { class: "crm-notes-part", "aria-labelledby": "crm-notes-title" },
    h("h2", { id: "crm-notes-title" }, "Notes"), form, count, items, more);
}

// ---------------------------------------------------------------- companies

async function companiesPage(main, _params, query) {
  const { state, update } = listState(main, "#/crm/companies", query, ["search", "ordering", "offset"]);
  const results = h("div", { class: "crm-results crm-companies", "aria-live": "polite" });
  const status = h("div", { class: "out" });

  const createOut = h("div", { class: "out" });
  const create = h("button", { type: "submit" }, "Create company");
  const createForm = h("form", { class: "card", "aria-labelledby": "crm-new-company" },
    h("h2", { id: "crm-new-company" }, "New company"),
    h("div", { class: "row" }, field("Company name", "name", { required: true, maxlength: 200 }), h("div", { class: "actions" }, create)),
    createOut);
  createForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = new FormData(createForm).get("name").trim();
    createOut.replaceChildren();
    busy(create, createOut, async () => {
      const made = await api.post("/api/v1/companies", { name });
      createForm.reset();
      createOut.replaceChildren(message(`Created “${made.name}”. It is at the top of the list, newest first.`, "ok"));
      searchForm.reset();
      await load({ search: "", ordering: "-created_at", offset: "" });
    });
  });

  const searchForm = h("form", { class: "crm-filters row", role: "search", "aria-label": "Search companies" },
    field("Search companies", "search", { type: "search", value: state.search, maxlength: 200 }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    load({ search: new FormData(searchForm).get("search").trim(), offset: "" });
  });

  async function load(changes = {}, focus = null) {
    update(changes);
    const ordering = state.ordering || "name";
    results.setAttribute("aria-busy", "true");
    try {
      const page = await api.get("/api/v1/companies", { search: state.search, ordering, limit: PAGE, offset: state.offset || 0 });
      results.replaceChildren(...companiesList(page, { ordering, search: state.search }, load, status, createOut));
    } catch (error) {
      showError(results, error);
    }
    results.removeAttribute("aria-busy");
    refocus(results, focus);
  }

  main.replaceChildren(subnav("#/crm/companies"), pageTitle("Companies"), createForm,
    h("h2", {}, "All companies"), searchForm, status, results);
  await load();
}

function companiesList(page, { ordering, search }, load, status, createOut) {
  const sort = (key) => (value) => load({ ordering: value, offset: "" }, `[data-sort="${key}"]`);
  const headers = [sortHeader("name", "Name", ordering, sort("name")), "Customers", sortHeader("created_at", "Added", ordering, sort("created_at")), "Actions"];
  const rows = page.items.map((company) => {
    const nameCell = h("div", { class: "crm-name-cell" }, company.name);
    const actions = h("div", { class: "actions" });
    const customers = h("a", { href: `#/crm?company_id=${company.id}` }, "Customers");
    const idle = () => {
      nameCell.replaceChildren(company.name);
      customers.setAttribute("aria-label", `Customers of ${company.name}`);
      actions.replaceChildren(h("button", { type: "button", class: "quiet", "aria-label": `Rename ${company.name}`, onclick: editing }, "Rename"));
    };
    function editing() {
      status.replaceChildren(); // earlier messages are about something else now
      createOut.replaceChildren();
      const save = h("button", { type: "submit" }, "Save name");
      const out = h("div", { class: "out" });
      const form = h("form", { class: "crm-rename", "aria-label": `Rename ${company.name}` },
        field("New name", "name", { value: company.name, required: true, maxlength: 200 }),
        h("div", { class: "actions" }, save,
          h("button", { type: "button", class: "quiet", onclick: () => { idle(); actions.querySelector("button").focus(); } }, "Cancel")),
        out);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const name = new FormData(form).get("name").trim();
        out.replaceChildren();
        busy(save, out, async () => {
          const before = company.name;
          try {
            Object.assign(company, await api.patch(`/api/v1/companies/${company.id}`, { name }, ifMatch(company.version)));
          } catch (error) {
            if (!isConflict(error)) throw error;
            out.replaceChildren(conflict(() => { status.replaceChildren(); load(); }));
            out.querySelector("button").focus();
            return;
          }
          idle();
          status.replaceChildren(message(`Renamed “${before}” to “${company.name}”.`, "ok"));
          actions.querySelector("button").focus();
        });
      });
      nameCell.replaceChildren(form);
      actions.replaceChildren();
      form.querySelector("input").select();
    }
    idle();
    return [nameCell, customers,
      h("time", { datetime: company.created_at }, formatDate(company.created_at)), actions];
  });
  const go = (offset) => load({ offset: String(offset) }, offset > page.offset ? ".pager button:last-child" : ".pager button:first-child");
  return [
    table(`Companies${page.total ? ` (${formatNumber(page.total)})` : ""}`, headers, rows,
      { empty: page.offset ? "There are no companies on this page." : search ? "No companies match this search." : "No companies yet. Create one above." }),
    page.total ? pager(page, "companies", go) : null,
  ].filter(Boolean);
}

route("#/crm", customersPage);
route("#/crm/customers/:id", customerPage);
route("#/crm/companies", companiesPage);
