// The certificates section: a user's certificates with their expiry, upload (a PEM file and
// a key file), activate or deactivate with notify, and for admins the webhook endpoints with
// their delivery log and retry. Everything goes through /api/v1/users/{id}/certificates and
// /api/v1/webhooks, with the rules the API applies to any other client.
import {
  api, getAll, currentUser, isAdmin, h, field, message, showError, notify, table,
  formatDate, pageTitle, busy, route, navigate,
} from "./app.js";

const SOON_DAYS = 30; // "expires soon" is within this many days
const DAY_MS = 86_400_000;
const MAX_BODY = 64 * 1024; // what the API takes (schemas.py); said before a long upload
const EVENTS = [
  ["*", "Every event"],
  ["certificate.activated", "certificate.activated"],
  ["certificate.deactivated", "certificate.deactivated"],
];

// ---------------------------------------------------------------- shared bits

function tabs(current) {
  if (!isAdmin()) return null;
  const link = (href, name, text) =>
    h("a", { href, "aria-current": current === name ? "page" : null }, text);
  return h("nav", { class: "cert-tabs", "aria-label": "Certificates and webhooks" },
    link("#/certificates", "list", "Certificates"),
    link("#/certificates/webhooks", "webhooks", "Webhooks"));
}

function checkbox(text, name, checked) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", name, checked }), " ", text);
}

function badge(kind, text) {
  return h("span", { class: `badge ${kind}` }, text);
}

function days(n) {
  return `${n} day${n === 1 ? "" : "s"}`;
}

/** base64 of a file's bytes: a key file may be PEM text or binary DER. */
async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

// ---------------------------------------------------------------- certificates

/** The expiry date and, when it is near or past, a badge that says so in words. */
function expiry(cert) {
  if (!cert.not_after) return h("span", { class: "muted" }, "No expiry (not a PEM certificate)");
  const ms = new Date(cert.not_after) - Date.now();
  const left = Math.round(ms / DAY_MS);
  let mark = null;
  if (ms < 0) mark = badge("bad", "expired");
  else if (ms <= SOON_DAYS * DAY_MS) mark = badge("warn", "expires soon");
  const when = left === 0 ? "today" : left > 0 ? `in ${days(left)}` : `${days(-left)} ago`;
  return h("span", { class: "expiry" },
    h("time", { datetime: cert.not_after }, formatDate(cert.not_after)), " ", mark,
    h("span", { class: "muted when" }, when));
}

function certName(cert) {
  return cert.subject || `Certificate ${cert.id} (opaque text)`;
}

function summary(certs) {
  const now = Date.now();
  const count = (test) => certs.filter(test).length;
  const ends = (c) => (c.not_after ? new Date(c.not_after) - now : Infinity);
  const figures = [
    ["Certificates", certs.length],
    ["Active", count((c) => c.active)],
    [`Expiring within ${SOON_DAYS} days`, count((c) => ends(c) >= 0 && ends(c) <= SOON_DAYS * DAY_MS)],
    ["Expired", count((c) => ends(c) < 0)],
  ];
  return h("div", { class: "stats" }, figures.map(([label, value]) =>
    h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value))));
}

async function renderList(main, _params, query) {
  const me = currentUser();
  let owner = me;
  let picker = null;
  if (isAdmin()) {
    const users = await getAll("/api/v1/users");
    const wanted = Number(query.get("user")) || me.id;
    owner = users.find((u) => u.id === wanted) || { id: wanted, name: `User ${wanted}`, email: "" };
    picker = h("div", { class: "card picker" }, field("Whose certificates", "user", {
      value: owner.id,
      options: users.map((u) => [u.id, `${u.name} (${u.email})`]),
      onchange: (e) => navigate(`#/certificates?user=${e.target.value}`),
    }));
  }
  const mine = owner.id === me.id;
  const base = `/api/v1/users/${owner.id}/certificates`;
  const listBox = h("div", { class: "cert-list" }, h("p", { class: "loading" }, "Loading…"));
  const listOut = h("div");
  const notifyBox = checkbox("Notify the webhook receivers when I activate or deactivate", "notify", true);
  const notifyInput = notifyBox.querySelector("input");

  async function load() {
    let certs;
    try {
      certs = await getAll(base, { ordering: "not_after" });
    } catch (error) {
      showError(listBox, error);
      return;
    }
    const rows = certs.map((cert) => {
      const next = !cert.active;
      const action = h("button", { type: "button", class: next ? "" : "quiet",
        "aria-label": `${next ? "Activate" : "Deactivate"} ${certName(cert)}` },
        next ? "Activate" : "Deactivate");
      action.addEventListener("click", () => setActive(cert, next, action));
      return [
        h("span", { class: "subject" }, certName(cert)),
        !cert.issuer ? "—" : cert.issuer === cert.subject ? h("span", { class: "muted" }, "Self-signed") : cert.issuer,
        expiry(cert),
        cert.active ? badge("ok", "Active") : badge("", "Inactive"),
        cert.key_matches === null ? "—" : cert.key_matches ? "Matches" : "Does not match",
        cert.fingerprint_sha256 ? h("code", { class: "fingerprint" }, cert.fingerprint_sha256.slice(0, 23) + "…") : "—",
        action,
      ];
    });
    listBox.replaceChildren(
      ...(certs.length ? [summary(certs)] : []),
      table(mine ? "My certificates, soonest expiry first" : `Certificates of ${owner.name}, soonest expiry first`,
        ["Subject", "Issuer", "Expires", "State", "Key", "SHA-256", "Change"], rows,
        { empty: mine ? "You have no certificates yet. Upload one below." : `${owner.name} has no certificates yet.` }));
  }

  async function setActive(cert, active, button) {
    listOut.replaceChildren();
    // The state is absolute, so the API wants no version: a change made meanwhile by
    // someone else cannot conflict with this one (setting the same state changes nothing).
    const asked = notifyInput.checked;
    const status = await busy(button, listOut, async () => {
      const { response } = await api.patch(`${base}/${cert.id}/active`, { active, notify: asked }, { full: true });
      return response.status;
    });
    if (!status) return;
    // 202: a notification was queued; 200 with notify asked: no endpoint takes the event.
    const event = `certificate.${active ? "activated" : "deactivated"}`;
    const told = status === 202
      ? ` The webhook endpoints that take ${event} will be told.`
      : asked ? ` No webhook endpoint takes ${event}, so no one was told.` : " No notification was sent.";
    notify(`${active ? "Activated" : "Deactivated"} ${certName(cert)}.${told}`);
    await load();
  }

  // replaceChildren would write a null as the text "null": leave the absent parts out.
  main.replaceChildren(...[
    pageTitle(mine ? "My certificates" : `Certificates of ${owner.name}`),
    tabs("list"), picker,
    h("section", { "aria-labelledby": "cert-list-title" },
      h("h2", { id: "cert-list-title" }, "Certificates"),
      h("div", { class: "card notify-box" }, notifyBox,
        h("p", { class: "muted hint" }, `Those that expire within ${SOON_DAYS} days are marked "expires soon"; past ones "expired".`)),
      listOut, listBox),
    uploadForm(owner, mine, base, load)].filter(Boolean));
  await load();
}

function uploadForm(owner, mine, base, reload) {
  const certField = field("Certificate (PEM file)", "certificate", { type: "file", accept: ".pem,.crt,.cer,.txt", required: true });
  const keyField = field("Private key file (PEM or DER)", "key", { type: "file", accept: ".pem,.key,.der", required: true });
  const activeBox = checkbox("Activate it now", "active", false);
  const out = h("div", { class: "out", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Upload certificate");
  const form = h("form", { class: "card upload", "aria-labelledby": "cert-upload-title" },
    h("h2", { id: "cert-upload-title" }, mine ? "Upload a certificate" : `Upload a certificate for ${owner.name}`),
    h("p", { class: "muted" }, "The key is sent once, stored encrypted, and never shown again, not even to you."),
    h("div", { class: "row" }, certField, keyField), activeBox, h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    out.replaceChildren();
    const certFile = certField.querySelector("input").files[0];
    const keyFile = keyField.querySelector("input").files[0];
    busy(submit, out, async () => {
      if (!certFile || !keyFile) throw new Error("Choose both files: the certificate and its private key.");
      if (certFile.size > MAX_BODY) throw new Error("The certificate file is larger than 64 KiB, the most the API takes.");
      const made = await api.post(base, {
        body: await certFile.text(),
        private_key: await base64Of(keyFile),
        active: activeBox.querySelector("input").checked,
      });
      form.reset();
      const until = made.not_after ? ` It expires ${formatDate(made.not_after)}.` : "";
      out.replaceChildren(message(`Uploaded ${certName(made)}.${until}`, "ok"));
      await reload();
    });
  });
  return form;
}

// ---------------------------------------------------------------- webhooks (admins)

async function renderWebhooks(main, _params, query) {
  main.replaceChildren(...[pageTitle("Webhooks"), tabs("webhooks")].filter(Boolean));
  if (!isAdmin()) {
    main.append(message("Webhook endpoints are managed by admins. Ask one to add a receiver for your certificates' events."));
    return;
  }
  let selected = Number(query.get("endpoint")) || null;
  const secretBox = h("div");
  const endpointsBox = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  const deliveriesBox = h("section", { "aria-labelledby": "deliveries-title" });
  let endpoints = [];

  async function loadEndpoints() {
    try {
      endpoints = await getAll("/api/v1/webhooks");
    } catch (error) {
      showError(endpointsBox, error);
      return;
    }
    if (!endpoints.some((e) => e.id === selected)) selected = endpoints.length ? endpoints[0].id : null;
    endpointsBox.replaceChildren(table("Webhook endpoints", ["Receiver URL", "Events", "State", "Description", "Deliveries"],
      endpoints.map((e) => [
        h("code", { class: "url" }, e.url),
        e.events.join(", "),
        [e.active ? badge("ok", "Active") : badge("", "Paused"), e.source === "settings" ? [" ", badge("", "from settings")] : null],
        e.description || "—",
        e.id === selected
          ? h("strong", {}, "Shown below")
          : h("a", { href: `#/certificates/webhooks?endpoint=${e.id}`, "aria-label": `Show the deliveries to ${e.url}` }, "Show deliveries"),
      ]), { empty: "No webhook endpoints yet. Add one below." }));
    await deliveries();
  }

  let timer = null;
  let statusFilter = "";
  async function deliveries() {
    clearTimeout(timer);
    const endpoint = endpoints.find((e) => e.id === selected);
    if (!endpoint) {
      deliveriesBox.replaceChildren();
      return;
    }
    const listBox = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    const out = h("div");
    const filter = field("Status", "delivery-status", {
      value: statusFilter,
      options: [["", "Any"], ["pending", "Pending"], ["delivered", "Delivered"], ["failed", "Failed"]],
      onchange: (e) => { statusFilter = e.target.value; deliveries(); },
    });
    const refresh = h("button", { type: "button", class: "quiet", onclick: () => deliveries() }, "Refresh");
    deliveriesBox.replaceChildren(
      h("h2", { id: "deliveries-title" }, "Deliveries to ", h("code", { class: "url" }, endpoint.url)),
      h("div", { class: "toolbar" }, filter, refresh), out, listBox);
    let items;
    try {
      items = (await api.get(`/api/v1/webhooks/${endpoint.id}/deliveries`, { status: statusFilter, limit: 50 })).items;
    } catch (error) {
      showError(listBox, error);
      return;
    }
    const kinds = { delivered: "ok", failed: "bad", pending: "warn" };
    listBox.replaceChildren(table("Deliveries, newest first", ["Event", "Status", "Attempts", "Last answer", "Created", "Delivered or next attempt", "Retry"],
      items.map((d) => [
        [h("span", {}, d.event_type), h("code", { class: "event-id" }, d.event_id)],
        badge(kinds[d.status] || "", d.status),
        String(d.attempts),
        d.last_status_code ? `HTTP ${d.last_status_code}` : d.last_error || "—",
        formatDate(d.created_at),
        d.delivered_at ? formatDate(d.delivered_at) : d.next_attempt_at ? `next ${formatDate(d.next_attempt_at)}` : "—",
        d.status === "failed" ? retryButton(d, out) : "—",
      ]), { empty: statusFilter ? `No ${statusFilter} deliveries.` : "No deliveries yet." }));
    // Deliveries go out in the background: while one is pending, look again shortly.
    if (items.some((d) => d.status === "pending")) {
      timer = setTimeout(() => deliveriesBox.isConnected && deliveries(), 2000);
    }
  }

  function retryButton(delivery, out) {
    const button = h("button", { type: "button", "aria-label": `Retry delivery ${delivery.id}` }, "Retry");
    button.addEventListener("click", () => busy(button, out, async () => {
      await api.post(`/api/v1/webhooks/deliveries/${delivery.id}/retry`);
      notify(`Delivery ${delivery.id} (${delivery.event_type}) is queued to be sent again.`);
      await deliveries();
    }));
    return button;
  }

  function showSecret(made) {
    const id = `secret-${made.id}`;
    const copied = h("p", { class: "muted", role: "status" });
    const input = h("input", { id, type: "text", readonly: true, value: made.secret, class: "secret" });
    const copy = h("button", { type: "button", class: "quiet" }, "Copy");
    copy.addEventListener("click", async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(made.secret);
        copied.textContent = "Copied.";
      } catch {
        copied.textContent = "The browser did not let the page copy it: it is selected, press Ctrl+C (or ⌘C).";
      }
    });
    secretBox.replaceChildren(h("div", { class: "card secret-box", role: "region", "aria-labelledby": `${id}-title` },
      h("h2", { id: `${id}-title` }, "Signing secret: copy it now"),
      h("p", {}, "Copy it now: this is the signing secret of the receiver at ", h("code", { class: "url" }, made.url),
        ". Wharf shows it only this once. Give it to the receiver, which uses it to check each delivery's signature (it is not your login)."),
      h("div", { class: "field" }, h("label", { for: id }, "Signing secret"), h("div", { class: "secret-row" }, input, copy)),
      copied,
      h("button", { type: "button", onclick: () => secretBox.replaceChildren() }, "I have stored it")));
    secretBox.querySelector("h2").scrollIntoView({ block: "nearest" });
  }

  const urlField = field("Receiver URL", "url", { type: "url", required: true, placeholder: "https://receiver.example.com/hooks" });
  const descField = field("Description (optional)", "description", { maxlength: "500" });
  const eventBoxes = EVENTS.map(([value, text]) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "events", value, checked: value === "*" }), " ", text));
  const activeBox = checkbox("Active: send deliveries now", "active", true);
  const out = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Add endpoint");
  const form = h("form", { class: "card webhook-new", "aria-labelledby": "webhook-new-title" },
    h("h2", { id: "webhook-new-title" }, "Add a webhook endpoint"),
    h("div", { class: "row" }, urlField, descField),
    h("fieldset", { class: "events" }, h("legend", {}, "Events"), eventBoxes),
    activeBox, h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    out.replaceChildren();
    const data = new FormData(form);
    busy(submit, out, async () => {
      const events = data.getAll("events");
      if (!events.length) throw new Error("Pick at least one event.");
      const made = await api.post("/api/v1/webhooks", {
        url: String(data.get("url")).trim(),
        events: events.includes("*") ? ["*"] : events,
        active: data.get("active") !== null,
        description: String(data.get("description") || "").trim() || null,
      });
      form.reset();
      selected = made.id;
      showSecret(made);
      notify(`Added the endpoint ${made.url}.`);
      await loadEndpoints();
    });
  });

  main.append(secretBox,
    h("section", { "aria-labelledby": "endpoints-title" }, h("h2", { id: "endpoints-title" }, "Endpoints"), endpointsBox),
    deliveriesBox, form);
  await loadEndpoints();
}

route("#/certificates", renderList);
route("#/certificates/webhooks", renderWebhooks);
