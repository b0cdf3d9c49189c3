// TeamCart in the browser: sign in with a name, open or join a cart, add your own items,
// see everyone's changes live over the WebSocket, pay your own share, and see the order.
// Plain ES module, no build step. Every server error's `detail` is shown to the person.

const main = document.getElementById("main");
const alertBox = document.getElementById("alert");
const statusBox = document.getElementById("status");

// ---------------------------------------------------------------- small DOM helper (no innerHTML)

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function showError(message) {
  alertBox.className = "alert";
  alertBox.textContent = message;
  alertBox.hidden = false;
}

function showInfo(message) {
  alertBox.className = "alert info";
  alertBox.textContent = message;
  alertBox.hidden = false;
}

function clearAlert() {
  alertBox.hidden = true;
  alertBox.textContent = "";
}

function announce(message) {
  statusBox.textContent = message;
}

// ---------------------------------------------------------------- money

const digitsCache = new Map();
function minorDigits(currency) {
  if (!digitsCache.has(currency)) {
    const options = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions();
    digitsCache.set(currency, options.maximumFractionDigits);
  }
  return digitsCache.get(currency);
}

export function formatMoney(minor, currency) {
  const digits = minorDigits(currency);
  return new Intl.NumberFormat(undefined, {
    style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(minor / 10 ** digits);
}

// ---------------------------------------------------------------- identity and API

const session = {
  get token() { return localStorage.getItem("teamcart.token"); },
  get userId() { return localStorage.getItem("teamcart.user_id"); },
  get name() { return localStorage.getItem("teamcart.name"); },
  save(body, name) {
    localStorage.setItem("teamcart.token", body.token);
    localStorage.setItem("teamcart.user_id", body.user_id);
    localStorage.setItem("teamcart.name", name);
  },
  forget() { ["token", "user_id", "name"].forEach((k) => localStorage.removeItem(`teamcart.${k}`)); },
};

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `The server answered ${status}.`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { detail: "Can't reach the server. Check your connection and try again." });
  }
  if (response.status === 204 || response.status === 304) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) session.forget();
    throw new ApiError(response.status, data);
  }
  return data;
}

// Run an action from a button: disable it while running, show the server's detail on failure.
async function act(button, action) {
  clearAlert();
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    showError(error.message);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------------------------------------------------------------- routing

function route() {
  const path = window.location.pathname;
  const hash = window.location.hash.replace(/^#/, "");
  document.getElementById("whoami").textContent = session.name ? `Signed in as ${session.name}` : "";
  if (!session.token) return renderSignIn();
  const join = path.match(/^\/join\/([A-Za-z0-9_-]+)$/);
  if (join) return joinCart(join[1]);
  const cart = hash.match(/^\/carts\/([0-9a-f-]{36})$/);
  if (cart) return renderCart(cart[1]);
  const order = hash.match(/^\/orders\/([0-9a-f-]{36})$/);
  if (order) return renderOrder(order[1]);
  if (hash === "/orders") return renderOrders();
  return renderHome();
}

function go(hash) {
  if (window.location.pathname !== "/") {
    window.location.assign(`/#${hash}`);
  } else {
    window.location.hash = hash;
  }
}

window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- sign in and home

function renderSignIn() {
  const input = h("input", { id: "display-name", name: "display_name", autocomplete: "nickname",
    required: true, maxlength: "60", placeholder: "Your name" });
  const form = h("form", { class: "row", onsubmit: async (event) => {
    event.preventDefault();
    await act(form.querySelector("button"), async () => {
      const name = input.value.trim();
      const body = await api("POST", "/api/v1/sessions", { display_name: name });
      session.save(body, name);
      route();
    });
  } }, input, h("button", { type: "submit" }, "Continue"));
  const joining = window.location.pathname.startsWith("/join/");
  main.replaceChildren(h("section", { class: "card" },
    h("h1", {}, joining ? "You're invited to a group cart" : "Order together"),
    h("p", { class: "muted" }, "Everyone adds their own items and pays their own share."),
    h("label", { for: "display-name" }, "What should the group call you?"),
    form));
  input.focus();
}

async function renderHome() {
  const stores = await api("GET", "/api/v1/stores").catch((error) => { showError(error.message); return { items: [] }; });
  const select = h("select", { id: "store", name: "store" },
    stores.items.map((store) => h("option", { value: store.id }, `${store.name} (${store.currency})`)));
  const open = h("button", { id: "open-cart", onclick: () => act(open, async () => {
    const cart = await api("POST", "/api/v1/teamcarts", { store_id: select.value });
    go(`/carts/${cart.id}`);
  }) }, "Open a group cart");
  main.replaceChildren(h("section", { class: "card" },
    h("h1", {}, "Start a group order"),
    stores.items.length
      ? [h("label", { for: "store" }, "Store"), h("div", { class: "row" }, select, open)]
      : h("p", { class: "muted" }, "No stores yet. An admin can add one, or run teamcart seed-demo."),
    h("p", { class: "muted" }, "Got an invite link? Just open it."),
    h("button", { class: "secondary", onclick: () => { session.forget(); route(); } }, "Sign out")));
}

async function joinCart(code) {
  const cart = await act(null, () => api("POST", "/api/v1/teamcarts/join", { invite_code: code }));
  if (cart) {
    history.replaceState(null, "", `/#/carts/${cart.id}`);
    route();
  } else {
    main.replaceChildren(h("section", { class: "card" }, h("h1", {}, "Can't join this cart"),
      h("p", {}, h("a", { href: "/" }, "Go to the start page"))));
  }
}

// ---------------------------------------------------------------- the cart, live

let live = null; // the one open cart screen: {cartId, socket, version, cart, ...}

function closeLive() {
  if (live && live.socket) {
    live.closing = true;
    live.socket.close();
  }
  if (live && live.pinger) clearInterval(live.pinger);
  live = null;
}

async function renderCart(cartId) {
  closeLive();
  live = { cartId, version: 0, cart: null, products: null, store: null, online: new Set(),
    payment: null, attempts: 0, kept: new Map() };
  const state = live;
  try {
    state.cart = await api("GET", `/api/v1/teamcarts/${cartId}`);
    state.version = state.cart.version;
    state.online = new Set(state.cart.members.filter((m) => m.online).map((m) => m.user_id));
    const [store, products] = await Promise.all([
      api("GET", `/api/v1/stores/${state.cart.store_id}`),
      api("GET", `/api/v1/stores/${state.cart.store_id}/products`),
    ]);
    state.store = store;
    state.products = products.items;
  } catch (error) {
    showError(error.message);
    main.replaceChildren(h("p", {}, h("a", { href: "/" }, "Back to the start page")));
    return;
  }
  draw();
  connect(state);
}

function connect(state) {
  if (live !== state) return;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/ws/teamcarts/${state.cartId}?token=${encodeURIComponent(session.token)}`);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.attempts = 0;
    state.pinger = setInterval(() => socket.readyState === 1 && socket.send(JSON.stringify({ type: "ping" })), 20000);
  });
  socket.addEventListener("message", (event) => receive(state, JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    clearInterval(state.pinger);
    if (live !== state || state.closing) return;
    if (event.code === 4403 || event.code === 4404) {
      showError(event.code === 4403 ? "You are no longer a member of this cart." : "This cart no longer exists.");
      return;
    }
    // Reconnect with backoff; the snapshot on reconnect catches up on anything missed.
    state.attempts += 1;
    const delay = Math.min(10000, 300 * 2 ** state.attempts);
    setTimeout(() => connect(state), delay);
  });
}

function receive(state, message) {
  if (live !== state) return;
  if (message.type === "snapshot") {
    state.cart = message.cart;
    state.version = message.version;
    state.online = new Set(message.cart.members.filter((m) => m.online).map((m) => m.user_id));
  } else if (message.type === "update") {
    if (message.version <= state.version) return; // already seen (or in the snapshot)
    if (message.version !== state.version + 1) {
      state.socket.send(JSON.stringify({ type: "resync" }));
      return;
    }
    state.cart = message.cart;
    state.version = message.version;
    noteUpdate(state, message);
  } else if (message.type === "presence") {
    state.online = new Set(message.online);
  } else if (message.type === "error") {
    showError(message.detail);
    return;
  } else {
    return;
  }
  draw();
}

function noteUpdate(state, message) {
  if (message.event !== "member_payment_updated") {
    announce(`Cart updated: ${message.event.replaceAll("_", " ")}`);
    return;
  }
  const member = state.cart.members.find((m) => m.user_id === message.user_id);
  const who = member ? member.display_name : "A member";
  announce(`${who}: payment ${message.payment ? message.payment.status.replaceAll("_", " ") : "updated"}`);
  if (message.user_id === session.userId && message.payment) {
    if (message.payment.status === "paid_online") {
      state.payment = null;
      showInfo("Your payment went through. Thank you!");
    } else if (message.payment.status === "failed") {
      showError("Your card was declined. Try again with another card.");
    } else if (message.payment.status === "refunded") {
      showInfo("Your payment was refunded.");
    }
  }
}

const PAYMENT_LABEL = {
  none: ["Not paid yet", ""], pending: ["Paying…", "warn"], cod_committed: ["Cash on delivery", "ok"],
  paid_online: ["Paid online", "ok"], failed: ["Payment failed", "bad"], refunded: ["Refunded", "warn"],
  review: ["Under review", "bad"],
};

const STATUS_LABEL = {
  open: "Open — add your items", locked: "Locked — time to pay", ready_to_confirm: "Everyone has paid — ready to confirm",
  converted: "Ordered", expired: "Expired", cancelled: "Cancelled",
};

// Forms someone may be filling in survive redraws: a live update must not wipe their input.
function keep(key, build) {
  if (!live.kept.has(key)) live.kept.set(key, build());
  return live.kept.get(key);
}

function draw() {
  const state = live;
  const cart = state.cart;
  const me = cart.members.find((m) => m.user_id === session.userId);
  const isHost = cart.host_user_id === session.userId;
  const money = (minor) => formatMoney(minor, cart.currency);
  const focused = document.activeElement && document.activeElement.id;

  const members = h("ul", { class: "plain", id: "members" }, cart.members.map((member) => {
    const owesNothing = cart.status !== "open" && member.share_minor === 0 && member.payment.status === "none";
    const [label, tone] = owesNothing ? ["Nothing to pay", "ok"] : PAYMENT_LABEL[member.payment.status] || [member.payment.status, ""];
    return h("li", { dataset: { userId: member.user_id, name: member.display_name } },
      h("div", { class: "spread" },
        h("span", {}, h("span", { class: `dot${state.online.has(member.user_id) ? " on" : ""}`,
          title: state.online.has(member.user_id) ? "online" : "offline" }),
          member.display_name, member.role === "host" ? " (host)" : "",
          member.user_id === session.userId ? " — you" : "",
          member.ready ? h("span", { class: "badge ok" }, " ready") : ""),
        h("span", {}, cart.status === "open" ? money(member.subtotal_minor) : money(member.share_minor))),
      h("div", { class: "row" }, cart.status === "open" ? null : h("span", { class: `badge payment ${tone}` }, label),
        isHost && cart.status === "open" && member.role !== "host"
          ? h("button", { class: "secondary", onclick: (e) => act(e.target, () => api("DELETE", `/api/v1/teamcarts/${cart.id}/members/${member.user_id}`)) }, "Remove")
          : null));
  }));

  const items = h("ul", { class: "plain", id: "items" }, cart.items.length === 0
    ? h("li", { class: "muted" }, "No items yet.")
    : cart.items.map((item) => {
      const owner = cart.members.find((m) => m.user_id === item.user_id);
      const mine = item.user_id === session.userId && cart.status === "open";
      return h("li", { dataset: { itemId: item.item_id } },
        h("div", { class: "spread" },
          h("span", {}, h("strong", {}, item.name), item.options.length ? ` (${item.options.join(", ")})` : "",
            h("span", { class: "muted" }, ` — ${owner ? owner.display_name : "someone"}`)),
          h("span", {}, `${item.quantity} × ${money(item.unit_price_minor)} = ${money(item.line_total_minor)}`)),
        mine ? h("div", { class: "row" },
          h("label", { class: "visually-hidden", for: `qty-${item.item_id}` }, `Quantity of ${item.name}`),
          h("input", { type: "number", min: "1", max: "99", value: item.quantity, class: "qty", id: `qty-${item.item_id}`,
            onchange: (e) => act(e.target, () => api("PATCH", `/api/v1/teamcarts/${cart.id}/items/${item.item_id}`, { quantity: Number(e.target.value) })) }),
          h("button", { class: "secondary", onclick: (e) => act(e.target, () => api("DELETE", `/api/v1/teamcarts/${cart.id}/items/${item.item_id}`)) }, "Remove")) : null);
    }));

  const totals = h("table", { class: "totals", id: "totals" }, h("tbody", {},
    h("tr", {}, h("td", {}, "Subtotal"), h("td", {}, money(cart.subtotal_minor))),
    h("tr", {}, h("td", {}, "Delivery"), h("td", {}, money(cart.delivery_fee_minor))),
    cart.status !== "open" ? h("tr", {}, h("td", {}, "Tax"), h("td", {}, money(cart.tax_minor))) : null,
    cart.tip_minor ? h("tr", {}, h("td", {}, "Tip"), h("td", {}, money(cart.tip_minor))) : null,
    cart.discount_minor ? h("tr", {}, h("td", {}, "Discount"), h("td", {}, `−${money(cart.discount_minor)}`)) : null,
    h("tr", { class: "total" }, h("td", {}, "Total"), h("td", {}, money(cart.total_minor)))));

  const inviteUrl = `${window.location.origin}/join/${cart.invite_code}`;
  const header = h("section", { class: "card" },
    h("div", { class: "spread" }, h("h1", {}, state.store ? state.store.name : "Group cart"),
      h("span", { class: "badge", id: "cart-status", dataset: { status: cart.status } }, STATUS_LABEL[cart.status] || cart.status)),
    cart.status === "open" ? h("div", {},
      h("label", { for: "invite-link" }, "Invite link"),
      h("div", { class: "row" }, h("input", { id: "invite-link", readonly: true, value: inviteUrl, class: "invite", size: "40" }),
        h("button", { class: "secondary", onclick: async (e) => {
          try { await navigator.clipboard.writeText(inviteUrl); announce("Invite link copied"); showInfo("Invite link copied."); }
          catch { document.getElementById("invite-link").select(); showInfo("Select the link and copy it."); }
        } }, "Copy"))) : null,
    cart.order_id ? h("p", {}, h("a", { href: `/#/orders/${cart.order_id}`, id: "order-link" }, "See the order")) : null);

  const left = [header];
  if (cart.status === "open") left.push(keep("catalog", () => catalog(cart)));
  left.push(h("section", { class: "card" }, h("h2", {}, "Items"), items));

  const right = [
    h("section", { class: "card" }, h("h2", {}, "Who's in"), members),
    h("section", { class: "card" }, h("h2", {}, "Totals"), totals),
    actions(cart, me, isHost),
  ];
  main.replaceChildren(h("div", { class: "grid" }, h("div", {}, left), h("div", {}, right)));
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus();
  }
}

function catalog(cart) {
  return h("section", { class: "card", id: "catalog" }, h("h2", {}, "Add your items"),
    live.products.map((product) => {
      const chosen = new Map(product.option_groups.map((g) => [g.name, new Set()]));
      const groups = product.option_groups.map((group) => h("fieldset", {},
        h("legend", {}, `${group.name} ${group.min ? "(choose " + (group.min === group.max ? group.min : `${group.min}–${group.max}`) + ")" : `(up to ${group.max})`}`),
        group.options.map((option) => {
          const id = `opt-${product.id}-${group.name}-${option.name}`.replace(/\s+/g, "-");
          const single = group.max === 1;
          return h("label", { for: id, style: "font-weight:400" },
            h("input", { type: single ? "radio" : "checkbox", id, name: `${product.id}-${group.name}`, value: option.name,
              onchange: (e) => {
                const set = chosen.get(group.name);
                if (single) set.clear();
                if (e.target.checked) set.add(option.name); else set.delete(option.name);
              } }),
            ` ${option.name}${option.price_delta_minor ? ` (+${formatMoney(option.price_delta_minor, cart.currency)})` : ""}`);
        })));
      const qtyId = `add-qty-${product.id}`;
      const qty = h("input", { type: "number", min: "1", max: "99", value: "1", class: "qty", id: qtyId });
      return h("div", { class: "product", dataset: { productName: product.name } },
        h("div", { class: "spread" }, h("strong", {}, product.name), h("span", {}, formatMoney(product.price_minor, cart.currency))),
        product.stock !== null ? h("div", { class: "muted" }, `${product.stock} left`) : null,
        groups,
        h("div", { class: "row" }, h("label", { for: qtyId, class: "visually-hidden" }, `Quantity of ${product.name}`), qty,
          h("button", { onclick: (e) => act(e.target, async () => {
            const options = [...chosen.values()].flatMap((set) => [...set]);
            await api("POST", `/api/v1/teamcarts/${cart.id}/items`, { product_id: product.id, quantity: Number(qty.value), options });
            announce(`Added ${product.name}`);
          }) }, `Add ${product.name}`)));
    }));
}

function actions(cart, me, isHost) {
  const path = `/api/v1/teamcarts/${cart.id}`;
  const box = h("section", { class: "card", id: "actions" }, h("h2", {}, "What's next"));
  const call = (method, suffix, body) => (e) => act(e.target, () => api(method, path + suffix, body));
  if (cart.status === "open") {
    if (me) box.append(h("div", { class: "row" }, h("button", { class: "secondary", onclick: call("PUT", "/ready", { ready: !me.ready }) },
      me.ready ? "I'm not ready" : "I'm ready")));
    if (isHost) box.append(h("p", {}, h("button", { id: "lock", onclick: call("POST", "/lock") }, "Lock the cart and split the bill")));
    else box.append(h("p", { class: "muted" }, "The host locks the cart when everyone is done."));
  }
  if (cart.status === "locked" && isHost && !cart.members.some((m) => m.payment.status !== "none" && m.payment.status !== "failed")) {
    const tip = keep("tip", () => h("input", { type: "number", min: "0", step: "any", id: "tip", value: (cart.tip_minor / 10 ** minorDigits(cart.currency)).toString(), class: "qty" }));
    const coupon = keep("coupon", () => h("input", { id: "coupon", placeholder: "Coupon code", size: "10" }));
    box.append(
      h("label", { for: "tip" }, `Tip (${cart.currency})`),
      h("div", { class: "row" }, tip, h("button", { class: "secondary", onclick: (e) => act(e.target, () => api("PUT", `${path}/tip`, { amount_minor: Math.round(Number(tip.value) * 10 ** minorDigits(cart.currency)) })) }, "Set tip")),
      h("label", { for: "coupon" }, "Coupon"),
      h("div", { class: "row" }, coupon, h("button", { class: "secondary", onclick: (e) => act(e.target, () => api("PUT", `${path}/coupon`, { code: coupon.value.trim() })) }, "Apply"),
        cart.discount_minor ? h("button", { class: "secondary", onclick: call("DELETE", "/coupon") }, "Remove coupon") : null),
      h("p", {}, h("button", { class: "secondary", id: "unlock", onclick: call("POST", "/unlock") }, "Unlock to change items")));
  }
  if (cart.status === "locked" && me && me.share_minor > 0 && ["none", "pending", "failed", "refunded"].includes(me.payment.status)) {
    box.append(h("p", {}, `Your share: ${formatMoney(me.share_minor, cart.currency)}`),
      h("div", { class: "row" },
        h("button", { id: "pay-cod", onclick: call("POST", "/payments/cod") }, "Pay cash on delivery"),
        h("button", { id: "pay-online", class: "secondary", onclick: (e) => act(e.target, () => startOnlinePayment(cart)) }, "Pay online")));
    if (live.payment) box.append(live.payment.form);
  } else if (me && ["cod_committed", "paid_online"].includes(me.payment.status) && cart.status !== "converted") {
    box.append(h("p", { class: "muted" }, "You're all set. Waiting for the others."));
  }
  if (cart.status === "ready_to_confirm" && isHost) box.append(keep("address", () => addressForm(cart)));
  else if (cart.status === "ready_to_confirm") box.append(h("p", { class: "muted" }, "Everyone has paid. The host confirms the order."));
  if (isHost && ["open", "locked", "ready_to_confirm"].includes(cart.status)) {
    box.append(h("p", {}, h("button", { class: "danger", id: "cancel", onclick: (e) => {
      if (window.confirm("Cancel this cart for everyone? Online payments are refunded.")) act(e.target, () => api("POST", `${path}/cancel`));
    } }, "Cancel the cart")));
  }
  if (cart.status === "converted") box.append(h("p", {}, "The order is placed. ", h("a", { href: `/#/orders/${cart.order_id}` }, "See it")));
  return box;
}

function addressForm(cart) {
  const field = (name, label, required = true) => [h("label", { for: `addr-${name}` }, label),
    h("input", { id: `addr-${name}`, name, required, autocomplete: name === "line1" ? "address-line1" : name === "postal_code" ? "postal-code" : undefined })];
  const form = h("form", { id: "confirm-form", onsubmit: (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    if (!data.line2) delete data.line2;
    act(form.querySelector("button"), async () => {
      const result = await api("POST", `/api/v1/teamcarts/${cart.id}/confirm`, { delivery_address: data });
      showInfo(`Order ${result.number} placed.`);
    });
  } },
  h("h2", {}, "Deliver to"), field("line1", "Address"), field("line2", "Address line 2 (optional)", false),
  field("city", "City"), field("postal_code", "Postal code"), field("country", "Country (2 letters)"),
  h("p", {}, h("button", { type: "submit", id: "confirm" }, "Confirm the order")));
  return form;
}

// ---------------------------------------------------------------- paying online with Stripe.js

const loadedScripts = new Map();
function loadScript(src) {
  if (!loadedScripts.has(src)) {
    loadedScripts.set(src, new Promise((resolve, reject) => {
      document.head.append(h("script", { src, onload: resolve, onerror: () => reject(new Error("Couldn't load Stripe. Check your connection.")) }));
    }));
  }
  return loadedScripts.get(src);
}

async function startOnlinePayment(cart) {
  // A new attempt gets a new card form: the one a declined card left is for the old intent.
  live.payment = null;
  draw();
  const payment = await api("POST", `/api/v1/teamcarts/${cart.id}/payments/online`);
  await loadScript(payment.stripe_js_url);
  const stripe = window.Stripe(payment.publishable_key);
  const mount = h("div", { id: "card-element" });
  const pay = h("button", { type: "submit", id: "pay-card" }, `Pay ${formatMoney(payment.amount_minor, payment.currency)}`);
  const form = h("form", { id: "card-form", onsubmit: (event) => {
    event.preventDefault();
    act(pay, async () => {
      let paymentIntent = payment.payment_intent_id;
      if (payment.confirm_on_server) {
        // This Stripe.js (the emulator's) tokenises the card; the server confirms.
        const { token, error } = await stripe.createToken(card);
        if (error) throw new Error(error.message || "Check your card details.");
        await api("POST", `/api/v1/teamcarts/${cart.id}/payments/online/confirm`, { payment_intent_id: paymentIntent, payment_method: token.card.id });
      } else {
        const { error } = await stripe.confirmCardPayment(payment.client_secret, { payment_method: { card } });
        if (error) throw new Error(error.message || "Your card was declined.");
      }
      showInfo("Payment sent. Waiting for the bank's answer…");
    }).then(() => {
      // A declined card leaves the form so the person can try another one.
      if (alertBox.className === "alert") live.payment = null;
    });
  } }, h("label", {}, "Card"), mount, h("p", {}, pay));
  const card = stripe.elements().create("card");
  live.payment = { form, card };
  draw();
  card.mount(mount);
}

// ---------------------------------------------------------------- orders

async function renderOrders() {
  closeLive();
  const page = await api("GET", "/api/v1/orders").catch((error) => { showError(error.message); return { items: [] }; });
  main.replaceChildren(h("section", { class: "card", id: "orders" }, h("h1", {}, "My orders"),
    page.items.length === 0 ? h("p", { class: "muted" }, "No orders yet.") :
      h("ul", { class: "plain" }, page.items.map((order) => h("li", {},
        h("div", { class: "spread" }, h("a", { href: `/#/orders/${order.id}` }, `Order ${order.number}`),
          h("span", {}, formatMoney(order.total_minor, order.currency))),
        h("div", { class: "muted" }, `${new Date(order.created_at).toLocaleString()} — ${order.status}`))))));
}

async function renderOrder(orderId) {
  closeLive();
  const order = await act(null, () => api("GET", `/api/v1/orders/${orderId}`));
  if (!order) return;
  const money = (minor) => formatMoney(minor, order.currency);
  const a = order.delivery_address;
  main.replaceChildren(h("section", { class: "card", id: "order" },
    h("div", { class: "spread" }, h("h1", {}, `Order ${order.number}`), h("span", { class: "badge ok", id: "order-status" }, order.status)),
    h("ul", { class: "plain" }, order.lines.map((line) => h("li", { class: "spread" },
      h("span", {}, `${line.quantity} × ${line.name}${line.options.length ? ` (${line.options.join(", ")})` : ""}`), h("span", {}, money(line.line_total_minor))))),
    h("table", { class: "totals" }, h("tbody", {},
      h("tr", {}, h("td", {}, "Subtotal"), h("td", {}, money(order.subtotal_minor))),
      h("tr", {}, h("td", {}, "Delivery"), h("td", {}, money(order.delivery_fee_minor))),
      h("tr", {}, h("td", {}, "Tax"), h("td", {}, money(order.tax_minor))),
      order.tip_minor ? h("tr", {}, h("td", {}, "Tip"), h("td", {}, money(order.tip_minor))) : null,
      order.discount_minor ? h("tr", {}, h("td", {}, "Discount"), h("td", {}, `−${money(order.discount_minor)}`)) : null,
      h("tr", { class: "total" }, h("td", {}, "Total"), h("td", {}, money(order.total_minor))))),
    h("h2", {}, "Payments"),
    h("ul", { class: "plain" }, order.payments.map((p) => h("li", { class: "spread" },
      h("span", {}, p.method === "cod" ? "Cash on delivery" : "Online"),
      h("span", {}, `${money(p.amount_minor)} — ${(PAYMENT_LABEL[p.status] || [p.status])[0].toLowerCase()}`)))),
    h("h2", {}, "Delivery"),
    h("p", {}, [a.line1, a.line2, `${a.postal_code} ${a.city}`, a.country].filter(Boolean).join(", ")),
    h("p", {}, h("a", { href: "/#/orders" }, "All my orders"))));
}

route();
