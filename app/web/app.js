// TeamCart in the browser: sign in with a name, open or join a cart, add your own items, see
// everyone's changes live over the WebSocket, pay your own share, and follow the order live
// to your door. A store's staff get their orders page (#/store/<id>): new orders come in by
// themselves, and each order's next moves, shipping and partial refunds are a press away; on
// it, "Getting paid" says where the store's Stripe setup stands, starts or continues it, and
// lists the money in (transfers per order) and out (payouts to the bank) (ADR 0018). A cart
// offers only the ways of paying its store takes.
// Plain ES module, no build step (ADR 0006); how the page is put together: ADR 0011.
//
// - The page is a function of state: render() builds the screen with h() and morph() patches
//   the live DOM to match it, so nothing anyone else does replaces the node under your cursor
//   or keyboard: focus, scroll and half-typed input survive every update.
// - Events are delegated (data-action, data-change, data-input, data-submit): nodes carry no
//   closures, so a patched node never runs a stale handler.
// - Every message sits in a slot beside the control that caused it, is announced (aria-live),
//   scrolled into view, and goes away when it no longer holds.
// - Who pays is the server's (ADR 0019): each member's share and what they owe come with the
//   cart; the page only shows how one becomes the other (allowance, a cover, the host paying).

performance.mark("teamcart:module-start");
const main = document.getElementById("main");
const liveRegion = document.getElementById("status");

// ---------------------------------------------------------------- DOM: build (no innerHTML) and patch

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  if (/^h[1-3]$/.test(tag)) el.setAttribute("tabindex", "-1"); // focus can be put on headings
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === "") continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Attributes a person owns once the node exists (what they typed, ticked or opened).
const OWNED = new Set(["value", "checked", "open"]);
const keyOf = (n) => (n.nodeType === 1 ? n.getAttribute("data-key") || n.id || null : null);

function morph(from, to) {
  if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName) {
    from.replaceWith(to);
    return to;
  }
  if (from.nodeType !== 1) {
    if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
    return from;
  }
  if (from.hasAttribute("data-foreign")) return from; // Stripe's card form lives in here
  const owned = from.hasAttribute("data-own");
  for (const { name } of [...from.attributes]) {
    if (!to.hasAttribute(name) && !(owned && OWNED.has(name))) from.removeAttribute(name);
  }
  for (const { name, value } of [...to.attributes]) {
    if (from.getAttribute(name) !== value && !(owned && OWNED.has(name))) from.setAttribute(name, value);
  }
  if (!owned && from.tagName === "INPUT") {
    if (from.type === "checkbox" || from.type === "radio") from.checked = to.hasAttribute("checked");
    else if (document.activeElement !== from && from.value !== (to.getAttribute("value") || "")) {
      from.value = to.getAttribute("value") || "";
    }
  }
  const next = [...to.childNodes];
  const old = [...from.childNodes];
  const keyed = new Map();
  for (const n of old) if (keyOf(n)) keyed.set(keyOf(n), n);
  const loose = old.filter((n) => !keyOf(n));
  const used = new Set();
  let cursor = 0;
  const result = next.map((n) => {
    let match = null;
    const key = keyOf(n);
    if (key) match = keyed.get(key) || null;
    else if (loose[cursor] && loose[cursor].nodeName === n.nodeName) match = loose[cursor++];
    if (!match || used.has(match)) return n;
    used.add(match);
    return morph(match, n);
  });
  for (const n of old) if (!used.has(n) && n.parentNode === from) n.remove();
  result.forEach((n, i) => {
    if (from.childNodes[i] !== n) from.insertBefore(n, from.childNodes[i] || null);
  });
  return from;
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

const formatters = new Map(); // building one costs more than a whole redraw's arithmetic
export function formatMoney(minor, currency) {
  const digits = minorDigits(currency);
  if (!formatters.has(currency)) {
    formatters.set(currency, new Intl.NumberFormat(undefined, {
      style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
    }));
  }
  return formatters.get(currency).format(minor / 10 ** digits);
}

// "12.5" in USD → 1250; null for anything that is not a plain amount. No floats.
export function parseAmount(text, currency) {
  const digits = minorDigits(currency);
  const match = String(text).trim().replace(",", ".").match(/^(\d{1,9})(?:\.(\d*))?$/);
  if (!match || (match[2] || "").length > digits) return null;
  return Number(match[1]) * 10 ** digits + Number((match[2] || "").padEnd(digits, "0") || 0);
}

// 1250 in USD → "12.50" (what an amount field shows): no floats either.
function plainAmount(minor, currency) {
  const digits = minorDigits(currency);
  if (!digits) return String(minor);
  const text = String(minor).padStart(digits + 1, "0");
  return `${text.slice(0, -digits)}.${text.slice(-digits)}`;
}

// The largest-remainder split the server uses for shares (domain/pricing.py), for showing
// each member's part of the fee, tax, tip and discount.
export function split(total, weights) {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  const parts = weights.map((w) => Math.floor((total * w) / sum));
  const order = weights.map((w, i) => [-((total * w) % sum), i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let left = total - parts.reduce((a, b) => a + b, 0);
  for (const [, i] of order) { if (left-- <= 0) break; parts[i] += 1; }
  return parts;
}

// ---------------------------------------------------------------- identity and API

const session = {
  get token() { return localStorage.getItem("teamcart.token"); },
  get userId() { return localStorage.getItem("teamcart.user_id"); },
  get name() { return localStorage.getItem("teamcart.name"); },
  get account() { return localStorage.getItem("teamcart.account"); }, // the email of an account session; none for a guest
  save(body, name) {
    staffStores.clear();
    localStorage.setItem("teamcart.token", body.token);
    localStorage.setItem("teamcart.user_id", body.user_id);
    localStorage.setItem("teamcart.name", name);
    localStorage.removeItem("teamcart.account");
  },
  forget() { staffStores.clear(); ["token", "user_id", "name", "account", "shopped"].forEach((k) => localStorage.removeItem(`teamcart.${k}`)); },
  // What the token says of its holder (the server checks it; the page only reads it): the
  // stores whose staff it is, and its roles.
  get claims() { return claimsOf(this.token) || { extras: {} }; },
  staffOf(storeId) {
    const extras = this.claims.extras || {};
    return (extras.roles || []).includes("admin") || (extras.staff_of || []).includes(storeId) || staffStores.has(storeId);
  },
};

const staffStores = new Set(); // stores whose orders this session was let read (staff added by an admin)

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims.sub === "string" ? claims : null;
  } catch {
    return null;
  }
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `The server answered ${status}.`);
    this.status = status;
    this.code = body ? body.code : undefined;
    this.body = body || {};
  }
}

const OFFLINE = "Can't reach the server. Check your connection; this page keeps trying.";

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return answerOf(fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }));
}

async function answerOf(request) {
  let response;
  try {
    response = await request;
  } catch {
    throw new ApiError(0, { code: "offline", detail: OFFLINE });
  }
  if (response.status === 204 || response.status === 304) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && !(data && data.code === "bad_credentials")) session.forget();
    const error = new ApiError(response.status, data);
    error.retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw error;
  }
  return data;
}

// ---------------------------------------------------------------- words: the server's codes, said for the person

const names = (list) => (list.length <= 2 ? list.join(" and ") : `${list.slice(0, -1).join(", ")} and ${list.at(-1)}`);

function words(error, context = {}) {
  const host = context.isHost;
  const amount = (field) => (error.body[field] !== undefined && context.currency ? formatMoney(error.body[field], context.currency) : null);
  const heldBy = String(error.message || "").match(/^(.+?)'s card could not be charged/);
  const said = {
    offline: OFFLINE,
    unauthorized: "Your session ended. Sign in again to carry on.",
    cart_locked: context.joining
      ? "This group has locked its cart and is paying now, so nobody new can join. Ask the host to unlock it, or to open a new cart for you."
      : host ? "The cart is locked. Unlock it first to change items." : "The host has locked the cart, so items can't change now.",
    cart_not_open: "This cart is closed: nothing can change any more.",
    removed_from_cart: "The host removed you from this cart, so this invite no longer lets you in. Ask the host if you should be in it.",
    invite_not_found: "There's no such invite: the host may have made a new link, the cart may be gone, or the link is mistyped. Ask the host for the link.",
    cart_full: "This cart is full (50 people).",
    not_a_member: "You're no longer a member of this cart.",
    host_only: "Only the host can do that.",
    not_item_owner: "Only the person who added an item can change it.",
    empty_cart: "There's nothing in the cart yet: add something first.",
    zero_subtotal: "Everything in the cart is free, so there's no bill to split.",
    invalid_quantity: "Choose a quantity from 1 to 99.",
    invalid_options: "Those choices don't fit this dish; check the options.",
    payment_activity_started: "Someone has already paid or chosen cash, so the bill can't change now.",
    already_paid: context.about ? `${context.about} has already paid or chosen cash, so that can't change now.` : "You've already paid.",
    nothing_owed: "You have nothing to pay.",
    tip_too_high: error.body.max_tip_minor !== undefined && context.currency
      ? `That tip is more than this store allows: at most ${formatMoney(error.body.max_tip_minor, context.currency)}.`
      : "That tip is more than this store allows.",
    invalid_tip: "Enter the tip as an amount, like 2.50.",
    invalid_coupon: "That coupon code doesn't exist here.",
    coupon_not_found: "That coupon code doesn't exist here.",
    coupon_not_applicable: "That coupon can't be used on this cart.",
    coupon_min_subtotal: "The cart isn't big enough for that coupon yet.",
    coupon_exhausted: "That coupon has been used up.",
    cart_not_ready: "Not everyone has paid or chosen cash yet.",
    invalid_address: "Fill in the address, city, postal code and country.",
    card_declined: context.shop ? "Your card was declined. Try another card, or pay on Stripe's page."
      : context.cod === false ? "Your card was declined. Try another card." : "Your card was declined. Try another card, or pay cash on delivery.",
    online_disabled: context.shop ? "This store doesn't take payments online now, so this order can't be paid here. Contact the store."
      : context.cod === false ? "This store doesn't take payments online now. Ask the host what to do." : "This store doesn't take payments online now: pay cash on delivery instead.",
    cod_disabled: context.online === false ? "This store doesn't take cash on delivery now. Ask the host what to do." : "This store doesn't take cash on delivery: pay online instead.",
    no_payment_method: "The store takes no way of paying at all: ask its staff.",
    card_invalid: "Check the card number, the expiry month and year and the CVC.",
    below_online_minimum: amount("minimum_minor")
      ? `Stripe can't take less than ${amount("minimum_minor")} online: pay cash${host ? " on delivery" : ", or ask the host to cover it"}.`
      : `That's too little to pay by card: pay cash${host ? " on delivery" : ", or ask the host to cover it"}.`,
    over_spending_limit: amount("limit_minor") ? `Your items would pass the host's limit of ${amount("limit_minor")}.` : "Your items would pass the host's spending limit.",
    would_change_paid_amounts: "That would change what someone has already paid or chosen to pay in cash, so it can't be done now.",
    capture_failed: `${heldBy ? `${heldBy[1]}'s` : "A held"} card couldn't be charged, so the order isn't placed yet: they can pay again, or you can cover them.`,
    invalid_allowance: "Enter an amount of zero or more, like 10.00, or leave it empty for none.",
    cart_not_locked: "That can only be done while the cart is locked for paying.",
    member_not_found: "That person isn't in the cart any more.",
    rate_limited: error.retryAfter ? `Too many tries. Try again ${soon(error.retryAfter)}.` : "That's a lot of requests at once. Wait a moment and try again.",
    service_unavailable: "The server is busy recovering. Try again in a moment.",
    version_conflict: "Someone changed the cart at the same moment. Try again.",
    not_a_participant: "This order isn't yours to see: only the host, the members who paid into it and the store's staff can.",
    order_not_found: "There's no such order: the link may be mistyped.",
    staff_only: "Only the store's staff can do that. Sign in with the store's staff link or token.",
    tracking_required: fieldOf(error) === "carrier"
      ? "Enter the carrier (like UPS or DHL) to mark the order shipped."
      : "Enter the tracking number to mark the order shipped.",
    illegal_transition: (error.body.allowed || []).length
      ? `The order can't make that move now: it can only become ${names(error.body.allowed.map(orderWord))}. Someone may have moved it meanwhile.`
      : "The order is finished: it can't move any more.",
    order_not_cancellable: context.staff
      ? "This order can't be cancelled any more: it has left the kitchen."
      : "The store has already accepted the order, so it can't be cancelled here. Contact the store.",
    may_not_cancel: "Only the host can cancel the group's order.",
    refund_exceeds_paid: error.body.refundable_minor !== undefined && context.currency
      ? `That's more than can go back: at most ${formatMoney(error.body.refundable_minor, context.currency)}.`
      : "That's more than was paid, less what was refunded before.",
    payment_not_refundable: "This payment can't be refunded: it wasn't paid online, or it's refunded in full or disputed.",
    invalid_refund: "Enter the refund as an amount, like 2.50.",
    email_taken: "There's an account with this email already. Sign in instead, or use another email.",
    bad_credentials: "The email or the password is wrong.",
    checkout_step_missing: "Give the address and choose delivery or pickup first.",
    order_not_payable: "This order takes no payment now: it's paid already, or it was cancelled.",
    not_your_cart: "This cart belongs to someone else.",
    payment_provider_unavailable: "Stripe didn't answer. Try again in a moment.",
    currency_not_payable_online: "This store's currency can't be paid by card.",
  };
  if (context.shop && error.code === "cart_not_open") return "This cart has become an order: it changes no more.";
  if (error.code === "validation_error" && fieldOf(error) === "amount_minor") return "Enter an amount above zero, like 2.50.";
  if (error.code === "out_of_stock") {
    const gone = (error.body.product_ids || []).map((id) => productName(id)).filter(Boolean);
    const then = context.shop ? "try again" : "lock again";
    return gone.length ? `Not enough ${names(gone)} left for this cart. Change the quantities and ${then}.` : `Some dishes sold out. Change the quantities and ${then}.`;
  }
  if (error.code === "validation_error" && error.body.errors && error.body.errors[0]) {
    const first = error.body.errors[0];
    const field = String(first.field || "").split(".").pop().replaceAll("_", " ");
    return `Check the ${field || "form"}: it ${first.message || "isn't valid"}.`;
  }
  return said[error.code] || error.message || "Something went wrong. Try again.";
}

function fieldOf(error) {
  const first = error.body && error.body.errors && error.body.errors[0];
  return first ? String(first.field || "").split(".").pop() : null;
}

function productName(id) {
  const state = here();
  const product = state && state.products && state.products.find((p) => p.id === id);
  return product ? product.name : null;
}

// "in 40 seconds (at 14:05)": when a refused sign-in may be tried again (Retry-After).
function soon(seconds) {
  const at = new Date(Date.now() + seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `${seconds < 90 ? `in ${seconds} second${seconds === 1 ? "" : "s"}` : `in ${Math.ceil(seconds / 60)} minutes`} (at ${at})`;
}

// ---------------------------------------------------------------- messages beside their controls

const ui = {
  screen: "loading", // signin | login | signup | home | cart | shop | orders | order | store | message
  messages: new Map(), // slot key → { text, tone, holds? }
  busy: new Set(), // keys of actions under way
  home: null,
  orders: null,
  staffForms: new Map(), // order id → the inline form open under it: shipped | rejected | cancelled
  notice: null, // { title, text } for the message screen
  next: "/", // where signing in or up goes on to
  carried: null, // the cart a guest's cart was merged into, to say so on arrival
};

// A message stays while `holds()` says it is still true; a good-news one without such a
// test goes after a few seconds; an error stays until the person acts there again.
function say(key, text, tone = "bad", holds = null) {
  const message = { text, tone, holds };
  ui.messages.set(key, message);
  if (!holds && (tone === "ok" || tone === "info")) {
    setTimeout(() => { if (ui.messages.get(key) === message) { unsay(key); render(); } }, 6000);
  }
  render();
  reveal(key);
}

function unsay(key) { ui.messages.delete(key); }

function reveal(key) {
  requestAnimationFrame(() => {
    const slot = document.getElementById(`msg-${key}`);
    if (slot && slot.textContent) slot.scrollIntoView({ block: "nearest", behavior: "instant" });
  });
}

function slot(key) {
  const message = ui.messages.get(key);
  return h("p", { id: `msg-${key}`, class: `msg ${message ? message.tone : ""}`, "aria-live": "polite", "data-slot": key, tabindex: "-1" },
    message ? message.text : "");
}

// Run an action: mark its control busy (never disabled: a disabled button drops focus), show
// what went wrong beside it, in the person's words.
async function act(key, action, context = {}) {
  if (ui.busy.has(key)) return undefined;
  ui.busy.add(key);
  unsay(key);
  render();
  keepFocusNear(key);
  try {
    return await action();
  } catch (error) {
    if (error.code === "not_a_member" && cartScreen) return removedFromCart();
    if (error.code === "unauthorized") return route();
    say(key, words(error, { ...context, ...cartContext() }), "bad", error.code === "offline" ? () => !cartScreen || cartScreen.conn !== "live" : null);
    return undefined;
  } finally {
    ui.busy.delete(key);
    render();
  }
}

function busy(key) { return ui.busy.has(key) ? "true" : null; }

// When what an action changed takes away the control it was started from (a Pay button once
// paid, Lock once locked), the keyboard carries on from its message or its section's heading,
// not from the top of the page.
function keepFocusNear(key) {
  const start = document.activeElement;
  const section = start && start.closest ? start.closest("section[id], details[id]") : null;
  if (!section) return;
  const sectionId = section.id;
  const watch = new MutationObserver(() => {
    if (start.isConnected && document.activeElement === start) return;
    watch.disconnect();
    if (document.activeElement && document.activeElement !== document.body) return;
    const place = document.getElementById(sectionId);
    const message = document.getElementById(`msg-${key}`);
    const target = message && message.textContent ? message : place && place.querySelector("h1, h2, h3");
    if (target) target.focus({ preventScroll: true });
  });
  watch.observe(main, { childList: true, subtree: true });
  setTimeout(() => watch.disconnect(), 15000);
}

function announce(text) { liveRegion.textContent = text; }

// ---------------------------------------------------------------- routing

function route() {
  const path = window.location.pathname;
  const hash = window.location.hash.replace(/^#/, "");
  closeCart();
  closeOrder();
  closeStore();
  shop = null;
  ui.messages.clear();
  ui.staffForms.clear();
  // A staff link (#/store/<id>?token=…) signs the browser in as the store's staff; the token
  // leaves the address bar (and the history) at once. Stripe's onboarding comes back to
  // #/store/<id>?onboarding=return|refresh (ADR 0018): that leaves the address bar too.
  const store = hash.match(/^\/store\/([0-9a-f-]{36})(?:\?(.*))?$/);
  let refused = null;
  let onboarding = null;
  if (store && store[2] !== undefined) {
    history.replaceState(null, "", `/#/store/${store[1]}`);
    const query = new URLSearchParams(store[2]);
    const token = query.get("token");
    if (token && !adoptToken(token)) refused = "That staff link is broken: ask for a new one, or paste the token below.";
    if (["return", "refresh"].includes(query.get("onboarding"))) onboarding = query.get("onboarding");
  }
  const extras = session.claims.extras || {};
  const staffHome = (extras.staff_of || [])[0];
  document.getElementById("whoami").textContent = session.name ? `Signed in as ${session.name}${staffHome ? " (store staff)" : ""}` : "";
  const navStore = document.getElementById("nav-store");
  if (navStore) { navStore.hidden = !staffHome; navStore.href = staffHome ? `/#/store/${staffHome}` : "/"; }
  const navSignIn = document.getElementById("nav-signin");
  navSignIn.hidden = Boolean(session.account);
  navSignIn.href = /^\/(shop|checkout)\//.test(hash) ? `/#/signin?next=${encodeURIComponent(hash)}` : "/#/signin";
  if (store) return showStore(store[1], refused, onboarding);
  const auth = hash.match(/^\/(signin|signup)(?:\?next=([\w%/-]*))?$/);
  if (auth) {
    const next = decodeURIComponent(auth[2] || "");
    ui.next = /^\/[\w/-]*$/.test(next) ? next : "/";
    ui.screen = auth[1] === "signin" ? "login" : "signup";
    render();
    focusFirst(auth[1] === "signin" ? "#login-email" : "#signup-display_name");
    return;
  }
  if (!session.token) { ui.screen = "signin"; render(); focusFirst("#display-name"); return; }
  const join = path.match(/^\/join\/([A-Za-z0-9_-]+)$/);
  if (join) return joinCart(join[1]);
  const cart = hash.match(/^\/carts\/([0-9a-f-]{36})$/);
  if (cart) return openCart(cart[1]);
  const order = hash.match(/^\/orders\/([0-9a-f-]{36})$/);
  if (order) return showOrder(order[1]);
  const shopAt = hash.match(/^\/shop\/([0-9a-f-]{36})$/);
  if (shopAt) return openShop({ storeId: shopAt[1] });
  const checkout = hash.match(/^\/checkout\/([0-9a-f-]{36})$/);
  if (checkout) return openShop({ cartId: checkout[1] });
  if (hash === "/orders") return showOrders();
  return showHome();
}

function go(hash) {
  if (window.location.pathname !== "/") window.location.assign(`/#${hash}`);
  else if (window.location.hash === `#${hash}`) route();
  else window.location.hash = hash;
}

function focusFirst(selector) {
  requestAnimationFrame(() => { const el = document.querySelector(selector); if (el) el.focus(); });
}

window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- delegated events

const ACTIONS = {};
const CHANGES = {};
const INPUTS = {};
const SUBMITS = {};

document.addEventListener("click", (event) => {
  const el = event.target.closest("[data-action]");
  if (!el || !ACTIONS[el.dataset.action]) return;
  event.preventDefault();
  if (el.getAttribute("aria-disabled") === "true") return;
  ACTIONS[el.dataset.action](el, event);
});
document.addEventListener("change", (event) => {
  const el = event.target.closest("[data-change]");
  if (el && CHANGES[el.dataset.change]) CHANGES[el.dataset.change](el, event);
});
document.addEventListener("input", (event) => {
  const el = event.target.closest("[data-input]");
  if (el && INPUTS[el.dataset.input]) INPUTS[el.dataset.input](el, event);
});
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-submit]");
  if (!form || !SUBMITS[form.dataset.submit]) return;
  event.preventDefault();
  SUBMITS[form.dataset.submit](form, event);
});

// ---------------------------------------------------------------- render

function render() {
  const screens = { loading, signin: signInScreen, login: accountScreen, signup: accountScreen, home: homeScreen, cart: cartScreenView, shop: shopScreen, orders: ordersScreen, order: orderScreen, store: storeScreen, message: messageScreen };
  for (const [key, message] of ui.messages) if (message.holds && !message.holds()) ui.messages.delete(key);
  const content = (screens[ui.screen] || loading)();
  morph(main, h("main", { id: "main", "data-screen": ui.screen }, content));
}

function loading() { return h("p", { class: "muted", "data-key": "loading" }, "Loading…"); }

function messageScreen() {
  const notice = ui.notice || { title: "Something went wrong", text: "" };
  return h("section", { class: "card", "data-key": "notice", id: "notice" },
    h("h1", {}, notice.title), h("p", {}, notice.text),
    h("p", {}, h("a", { href: "/" }, "Go to the start page")));
}

// ---------------------------------------------------------------- sign in and home

function signInScreen() {
  const joining = window.location.pathname.startsWith("/join/");
  return h("section", { class: "card", "data-key": "signin" },
    h("h1", {}, joining ? "You're invited to a group cart" : "Order together"),
    h("p", { class: "muted" }, "Everyone adds their own items and pays their own share."),
    h("form", { "data-submit": "sign-in", novalidate: true },
      h("label", { for: "display-name" }, "What should the group call you?"),
      h("div", { class: "row" },
        h("input", { id: "display-name", name: "display_name", autocomplete: "nickname", maxlength: "60", "data-own": true, "aria-describedby": "msg-signin" }),
        h("button", { type: "submit", "aria-disabled": busy("signin") }, "Continue")),
      slot("signin")),
    h("p", {}, "Have an account? ", h("a", { href: "/#/signin", id: "to-signin" }, "Sign in"), " or ", h("a", { href: "/#/signup", id: "to-signup" }, "create one"), "."));
}

SUBMITS["sign-in"] = (form) => act("signin", async () => {
  const name = form.querySelector("#display-name").value.trim();
  if (!name) { say("signin", "Type the name the group will see (anything you like)."); return; }
  const body = await api("POST", "/api/v1/sessions", { display_name: name });
  session.save(body, name);
  route();
});

async function showHome() {
  ui.screen = "home";
  ui.home = ui.home || { stores: null, carts: null };
  render();
  const [stores, carts] = await Promise.all([
    api("GET", "/api/v1/stores").catch((error) => { say("home", words(error)); return { items: [] }; }),
    api("GET", "/api/v1/teamcarts").catch(() => ({ items: [] })),
  ]);
  if (ui.screen !== "home") return;
  ui.home = { stores: stores.items, carts: carts.items };
  render();
  if (ui.carried && ui.carried.failed) { say("home", `You're signed in, but your cart couldn't come with you: ${ui.carried.failed}`); ui.carried = null; }
}

function homeScreen() {
  const { stores, carts } = ui.home || {};
  const start = h("section", { class: "card", "data-key": "start" },
    h("h1", {}, "Order from a store"),
    stores === null ? h("p", { class: "muted" }, "Loading the stores…")
      : stores.length ? [
        h("label", { for: "store" }, "Store"),
        h("div", { class: "row" },
          h("select", { id: "store", name: "store", "data-own": true },
            stores.map((store) => h("option", { value: store.id, "data-key": `store-${store.id}` }, `${store.name} (${store.currency})`))),
          h("button", { id: "open-cart", "data-action": "open-cart", "aria-disabled": busy("open-cart") }, "Open a group cart"),
          h("button", { id: "shop-alone", class: "secondary", "data-action": "shop-alone" }, "Shop on your own")),
        h("label", { class: "choice", for: "hold-cards" },
          h("input", { type: "checkbox", id: "hold-cards", "data-own": true, "aria-describedby": "hold-cards-hint" }), " Hold cards until I confirm"),
        h("p", { class: "muted small msg", id: "hold-cards-hint" }, "For a group cart: a card paying online is only held, and charged when you confirm the order."),
        slot("open-cart"),
      ] : h("p", { class: "muted" }, "No stores yet. An admin can add one, or run teamcart seed-demo."),
    h("p", { class: "muted" }, "A group cart: everyone adds their own items and pays their own share. Got an invite link? Just open it."),
    slot("home"));
  const mine = h("section", { class: "card", "data-key": "my-carts", id: "my-carts" },
    h("h2", {}, "My carts"),
    carts === null || carts === undefined ? h("p", { class: "muted" }, "Loading…")
      : carts.length === 0 ? h("p", { class: "muted" }, "You're not in any open cart.")
        : h("ul", { class: "plain" }, carts.map((cart) => h("li", { "data-key": `mc-${cart.id}` },
          h("div", { class: "spread" },
            h("a", { href: `/#/carts/${cart.id}` }, cart.store_name),
            h("span", { class: "badge" }, STATUS_LABEL[cart.status] || cart.status)),
          h("div", { class: "muted" },
            `${cart.role === "host" ? "You host" : "You're a guest"} · ${cart.member_count} ${cart.member_count === 1 ? "person" : "people"} · `,
            cart.my_share_minor !== null && cart.status !== "open"
              ? `your share ${formatMoney(cart.my_share_minor, cart.currency)}`
              : `your items: ${cart.my_item_count} (${formatMoney(cart.my_subtotal_minor, cart.currency)})`)))));
  const account = h("section", { class: "card", "data-key": "account" },
    h("h2", {}, "You"),
    h("p", {}, session.account ? `You're signed in as ${session.name} (${session.account}).` : `You're signed in as ${session.name || "a guest"} on this browser, as a guest.`),
    session.account ? null : h("p", {}, h("a", { href: "/#/signup" }, "Create an account"), " or ", h("a", { href: "/#/signin" }, "sign in"), " to find your orders from any browser."),
    h("button", { class: "secondary", "data-action": "sign-out" }, "Sign out"));
  return [start, mine, account];
}

ACTIONS["sign-out"] = () => { session.forget(); ui.home = null; route(); };
ACTIONS["shop-alone"] = () => go(`/shop/${document.getElementById("store").value}`);
ACTIONS["open-cart"] = () => act("open-cart", async () => {
  const select = document.getElementById("store");
  const hold = document.getElementById("hold-cards");
  const cart = await api("POST", "/api/v1/teamcarts", { store_id: select.value, ...(hold && hold.checked ? { capture: "on_confirm" } : {}) });
  go(`/carts/${cart.id}`);
});

async function joinCart(code) {
  ui.screen = "loading";
  render();
  try {
    const cart = await api("POST", "/api/v1/teamcarts/join", { invite_code: code });
    history.replaceState(null, "", `/#/carts/${cart.id}`);
    route();
  } catch (error) {
    if (error.code === "unauthorized") { route(); return; }
    ui.notice = { title: error.code === "invite_not_found" ? "No such invite" : "You can't join this cart", text: words(error, { joining: true }) };
    ui.screen = "message";
    render();
  }
}

// ---------------------------------------------------------------- accounts: sign in or up, the guest's cart kept

const ACCOUNT_FIELDS = ["display_name", "email", "password"];

function accountScreen() {
  const up = ui.screen === "signup";
  const form = up ? "signup" : "login";
  const field = (name, label, attrs, hint = null) => {
    const key = `${form}-${name}`;
    const message = ui.messages.get(key);
    return h("div", { "data-key": `f-${key}` },
      h("label", { for: key }, label),
      h("input", { id: key, name, class: "wide", "data-own": true, "aria-invalid": message && message.tone === "bad" ? "true" : null,
        "aria-describedby": [hint ? `${key}-hint` : "", `msg-${key}`].join(" ").trim(), ...attrs }),
      hint ? h("p", { class: "muted small msg", id: `${key}-hint` }, hint) : null,
      slot(key));
  };
  const carrying = !session.account && localStorage.getItem("teamcart.shopped");
  const other = `/#/${up ? "signin" : "signup"}${ui.next !== "/" ? `?next=${encodeURIComponent(ui.next)}` : ""}`;
  return h("section", { class: "card account", id: "account", "data-key": form, "aria-labelledby": "account-title" },
    h("h1", { id: "account-title" }, up ? "Create an account" : "Sign in"),
    session.account ? h("p", { class: "muted" }, `You're signed in as ${session.name} (${session.account}). Signing in again changes who you are on this browser.`)
      : carrying ? h("p", {}, "Your cart comes with you.") : null,
    h("form", { "data-submit": "account", "data-mode": form, novalidate: true },
      up ? field("display_name", "Your name", { autocomplete: "name", maxlength: "60" }) : null,
      field("email", "Email", { type: "email", autocomplete: "email", inputmode: "email", spellcheck: "false" }),
      field("password", "Password", { type: "password", autocomplete: up ? "new-password" : "current-password", maxlength: "256" }, up ? "At least 8 characters." : null),
      h("p", {}, h("button", { type: "submit", id: `${form}-submit`, "aria-disabled": busy(form) }, up ? "Create the account" : "Sign in")),
      slot(form)),
    h("p", {}, up ? "Have an account already? " : "New here? ", h("a", { href: other, id: "account-other" }, up ? "Sign in" : "Create an account")),
    session.account ? null : h("p", { class: "muted" }, "No account is needed to order: ",
      session.token ? h("a", { href: `/#${ui.next}` }, "carry on as a guest") : h("a", { href: "/" }, "give a name and carry on as a guest"), "."));
}

SUBMITS.account = (form) => {
  const mode = form.dataset.mode;
  const data = Object.fromEntries(new FormData(form).entries());
  const email = String(data.email || "").trim();
  for (const name of ACCOUNT_FIELDS) unsay(`${mode}-${name}`);
  const wrong = [];
  if (mode === "signup" && !String(data.display_name || "").trim()) wrong.push(["display_name", "Type your name: the store sees it on your orders."]);
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) wrong.push(["email", "Enter your email address, like ana@example.com."]);
  const password = String(data.password || "");
  if (mode === "signup" && password.length < 8) wrong.push(["password", "Choose a password of at least 8 characters."]);
  if (mode === "login" && !password) wrong.push(["password", "Enter your password."]);
  if (wrong.length) {
    for (const [name, text] of wrong) ui.messages.set(`${mode}-${name}`, { text, tone: "bad" });
    render();
    focusFirst(`#${mode}-${wrong[0][0]}`);
    return;
  }
  act(mode, async () => {
    let body;
    try {
      body = mode === "signup"
        ? await api("POST", "/api/v1/accounts", { email, password, display_name: String(data.display_name).trim() })
        : await api("POST", "/api/v1/sessions/password", { email, password });
    } catch (error) {
      const name = error.code === "email_taken" ? "email" : error.code === "validation_error" ? fieldOf(error) : null;
      if (!ACCOUNT_FIELDS.includes(name)) throw error;
      say(`${mode}-${name}`, words(error));
      focusFirst(`#${mode}-${name}`);
      return;
    }
    await signedIn(body, email);
  });
};

// The new session replaces the guest's; a guest who shopped here brings their cart along.
async function signedIn(body, email) {
  const guest = session.token && !session.account && localStorage.getItem("teamcart.shopped") ? session.token : null;
  const name = body.display_name || ((claimsOf(body.token) || {}).extras || {}).name || email;
  session.save(body, name);
  localStorage.setItem("teamcart.account", email);
  localStorage.removeItem("teamcart.shopped");
  let next = ui.next;
  if (guest) {
    try {
      const cart = await api("POST", "/api/v1/carts/merge", { guest_token: guest });
      if (cart.items.length) { ui.carried = cart.id; next = `/shop/${cart.store_id}`; }
    } catch (error) {
      if (error.code !== "cart_not_found") ui.carried = { failed: words(error) };
    }
  }
  ui.home = null;
  go(next);
}

// ---------------------------------------------------------------- the cart, live

let cartScreen = null; // the open cart: { cartId, cart, version, store, products, online, conn, ... }

function closeCart() {
  if (!cartScreen) return;
  cartScreen.closing = true;
  if (cartScreen.socket) cartScreen.socket.close();
  clearInterval(cartScreen.pinger);
  clearInterval(cartScreen.stockTimer);
  clearTimeout(cartScreen.retry);
  if (cartScreen.qr.url) URL.revokeObjectURL(cartScreen.qr.url);
  cartScreen = null;
}

async function openCart(cartId) {
  const state = { cartId, cart: null, version: 0, store: null, products: null, online: new Set(), conn: "connecting",
    attempts: 0, payment: null, lockAnyway: false, tipDraft: null, left: false, firstRender: false,
    qr: { open: false, code: null, url: null, loading: null }, modeDraft: null, methods: null };
  cartScreen = state;
  ui.screen = "loading";
  render();
  const early = window.teamcartEarly; // asked for by index.html while this module loaded
  window.teamcartEarly = undefined;
  try {
    state.cart = early && early.id === cartId ? await answerOf(early.answer) : await api("GET", `/api/v1/teamcarts/${cartId}`);
  } catch (error) {
    if (cartScreen !== state) return;
    if (error.code === "not_a_member") { removedFromCart(); return; }
    // Stripe's page sends a buyer who cancels back to #/carts/<id> (the server's default): their own cart.
    if (error.status === 404 && await api("GET", `/api/v1/carts/${cartId}`).catch(() => null) && cartScreen === state) {
      history.replaceState(null, "", `/#/checkout/${cartId}`);
      route();
      return;
    }
    ui.notice = { title: error.status === 404 ? "No such cart" : "Can't open this cart", text: words(error) };
    ui.screen = "message";
    closeCart();
    render();
    return;
  }
  if (cartScreen !== state) return;
  state.version = state.cart.version;
  state.online = new Set(state.cart.members.filter((m) => m.online).map((m) => m.user_id));
  ui.screen = "cart";
  render();
  performance.mark("teamcart:cart-drawn"); // in the DOM
  requestAnimationFrame(() => performance.mark("teamcart:cart-rendered")); // the frame it paints in
  connect(state);
  loadCatalog(state);
  loadMethods(state);
  state.stockTimer = setInterval(() => { if (document.visibilityState === "visible" && state.cart.status === "open") loadCatalog(state); }, 30000);
}

async function loadCatalog(state) {
  try {
    const [store, products] = await Promise.all([
      state.store ? state.store : api("GET", `/api/v1/stores/${state.cart.store_id}`),
      api("GET", `/api/v1/stores/${state.cart.store_id}/products`),
    ]);
    if (cartScreen !== state) return;
    state.store = store;
    state.products = products.items;
    render();
  } catch { /* the menu stays as it was; the next snapshot or timer tries again */ }
}

// How the store takes payment (its settings, ADR 0018): read once; again only when paying
// one way is refused because the store turned it off meanwhile. Unknown (the read failed),
// both are offered and the server says no.
async function loadMethods(state) {
  let methods;
  try {
    methods = await api("GET", `/api/v1/stores/${state.cart.store_id}/payment-methods`);
  } catch {
    methods = { cod: true, online: true, unknown: true };
  }
  if (cartScreen !== state) return;
  state.methods = methods;
  render();
}

const takes = (state) => (state && state.methods) || { cod: true, online: true, unknown: true };

function connect(state) {
  if (cartScreen !== state || state.closing) return;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/ws/teamcarts/${state.cartId}?token=${encodeURIComponent(session.token)}`);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.pinger = setInterval(() => socket.readyState === 1 && socket.send(JSON.stringify({ type: "ping" })), 20000);
  });
  socket.addEventListener("message", (event) => receive(state, JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    clearInterval(state.pinger);
    if (cartScreen !== state || state.closing || state.socket !== socket) return;
    if (event.code === 4403) { removedFromCart(); return; }
    if (event.code === 4404) {
      ui.notice = { title: "This cart is gone", text: "It no longer exists." };
      ui.screen = "message";
      closeCart();
      render();
      return;
    }
    // Reconnect with backoff (at most 5 s apart); the snapshot on reconnect catches up.
    state.attempts += 1;
    state.conn = state.attempts > 3 || !navigator.onLine ? "offline" : "reconnecting";
    render();
    state.retry = setTimeout(() => connect(state), Math.min(5000, 250 * 2 ** state.attempts));
  });
}

function reconnectNow() {
  const state = cartScreen;
  if (!state || state.conn === "live" || !state.socket || state.socket.readyState === 0) return;
  clearTimeout(state.retry);
  connect(state);
}
window.addEventListener("online", reconnectNow);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") reconnectNow(); });

function receive(state, message) {
  if (cartScreen !== state) return;
  const before = state.cart;
  if (message.type === "snapshot") {
    state.cart = message.cart;
    state.version = message.version;
    state.online = new Set(message.cart.members.filter((m) => m.online).map((m) => m.user_id));
    const wasDown = state.conn !== "live" && state.conn !== "connecting";
    state.conn = "live";
    state.attempts = 0;
    if (wasDown) { announce("Back online. The cart is up to date."); loadCatalog(state); }
  } else if (message.type === "update") {
    if (message.version <= state.version) return; // already seen (or in the snapshot)
    if (message.version !== state.version + 1) {
      state.socket.send(JSON.stringify({ type: "resync" }));
      return;
    }
    state.cart = message.cart;
    state.version = message.version;
    noteUpdate(state, before, message);
  } else if (message.type === "presence") {
    state.online = new Set(message.online);
  } else if (message.type === "reminder") {
    remind(state, message);
    return;
  } else if (message.type === "error") {
    say("strip", message.detail || "The server refused a message.", "bad");
    return;
  } else {
    return;
  }
  if (!state.cart.members.some((m) => m.user_id === session.userId)) { removedFromCart(); return; }
  if (state.qr.open && state.qr.code !== state.cart.invite_code && state.cart.status === "open") loadQr(state).catch(() => {});
  if (before && before.status !== state.cart.status) {
    state.lockAnyway = false;
    if (["open", "locked", "cancelled", "expired"].includes(state.cart.status)) loadCatalog(state);
  }
  render();
}

// A reminder from the server, said in words; it stays while it still holds.
function remind(state, message) {
  const at = message.deadline ? new Date(message.deadline).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : null;
  const me = () => mine(cartScreen);
  const still = (status) => cartScreen === state && state.cart.status === status;
  if (message.what === "ready") {
    say("strip", `Reminder: the cart closes ${at ? `at ${at}` : "soon"}. Add what you'd like, then press "I'm ready".`, "info", () => still("open") && !me().ready);
  } else if (message.what === "pay") {
    const owes = formatMoney(me().owes_minor, state.cart.currency);
    const ways = takes(state);
    const how = ways.online && ways.cod ? "online or by choosing cash on delivery" : ways.cod ? "by choosing cash on delivery" : "online";
    say("strip", `Reminder: pay your ${owes} ${at ? `before ${at}` : "soon"}, ${how}.`, "info",
      () => still("locked") && me().owes_minor > 0 && !SETTLED.has(me().payment.status));
  } else if (message.what === "confirm") {
    say("strip", "Reminder: confirm the order soon, or the cart expires and payments are refunded.", "info", () => still("ready_to_confirm"));
  } else {
    say("strip", "Reminder: the deadline is near.", "info");
  }
}

// A cart view a command answered with: shown at once when it is newer than the one on screen
// (the socket's update for it then is already seen).
function adopt(state, view) {
  if (cartScreen !== state || !view || !Array.isArray(view.members) || view.version <= state.version) return;
  const before = state.cart;
  state.cart = view;
  state.version = view.version;
  if (before.status !== view.status && ["open", "locked", "cancelled", "expired"].includes(view.status)) loadCatalog(state);
}

// Say what changed, in words, for screen readers (and the person's own payment, in place).
function noteUpdate(state, before, message) {
  const cart = state.cart;
  const who = (id) => { const m = cart.members.find((x) => x.user_id === id) || (before && before.members.find((x) => x.user_id === id)); return m ? m.display_name : "Someone"; };
  const said = [];
  if (before) {
    const oldItems = new Map(before.items.map((i) => [i.item_id, i]));
    const newIds = new Set(cart.items.map((i) => i.item_id));
    for (const item of cart.items) if (!oldItems.has(item.item_id)) said.push(`${who(item.user_id)} added ${item.name}`);
    for (const item of before.items) if (!newIds.has(item.item_id)) said.push(`${who(item.user_id)} removed ${item.name}`);
    const oldMembers = new Set(before.members.map((m) => m.user_id));
    for (const m of cart.members) if (!oldMembers.has(m.user_id)) said.push(`${m.display_name} joined`);
    for (const m of before.members) if (!cart.members.some((x) => x.user_id === m.user_id)) said.push(`${m.display_name} left`);
    if (before.status !== cart.status) said.push(`The cart is now ${STATUS_LABEL[cart.status] || cart.status}`);
    const money = (minor) => formatMoney(minor, cart.currency);
    const host = cart.host_user_id === session.userId ? "You" : who(cart.host_user_id);
    if (before.payment_mode !== cart.payment_mode) said.push(cart.payment_mode === "host_pays" ? `${host} ${host === "You" ? "pay" : "pays"} for everyone now` : "Everyone pays their own share again");
    if (before.allowance_minor !== cart.allowance_minor) said.push(cart.allowance_minor === null ? "No allowance any more" : `${host} ${host === "You" ? "cover" : "covers"} up to ${money(cart.allowance_minor)} of each guest's share`);
    if (before.spending_limit_minor !== cart.spending_limit_minor) said.push(cart.spending_limit_minor === null ? "No spending limit any more" : `Each guest's items may come to at most ${money(cart.spending_limit_minor)}`);
    for (const m of cart.members) {
      const was = before.members.find((x) => x.user_id === m.user_id);
      if (was && !was.covered && m.covered) said.push(`${host} ${host === "You" ? "cover" : "covers"} ${m.user_id === session.userId ? "your" : `${m.display_name}'s`} share`);
      if (was && m.user_id === session.userId && cart.status !== "open" && was.owes_minor !== m.owes_minor) said.push(`You pay ${money(m.owes_minor)} now`);
    }
    if (before.invite_code !== cart.invite_code) said.push("There's a new invite link; the old one no longer works");
  }
  if (message.event === "member_payment_updated" && message.payment) {
    said.push(`${who(message.user_id)}: ${(PAYMENT_LABEL[message.payment.status] || [message.payment.status])[0].toLowerCase()}`);
    if (message.user_id === session.userId) {
      const status = message.payment.status;
      if (status === "paid_online") { state.payment = null; say("pay", "Your payment went through. Thank you!", "ok", () => mine(cartScreen).payment.status === "paid_online"); }
      else if (status === "authorized") { state.payment = null; say("pay", "Thank you! Your card is held.", "ok", () => mine(cartScreen).payment.status === "authorized"); }
      else if (status === "failed") { state.payment = null; say("pay", takes(state).cod ? "Your card was declined. Try another card, or pay cash on delivery." : "Your card was declined. Try another card.", "bad", () => mine(cartScreen).payment.status === "failed"); }
      else if (status === "refunded") say("pay", "Your payment was refunded.", "info");
    }
  }
  announce(said.length ? said.join(". ") + "." : "The cart was updated.");
}

function removedFromCart() {
  const state = cartScreen;
  const left = state && state.left;
  closeCart();
  ui.notice = left
    ? { title: "You left the cart", text: "Your items went with you. You can join again with the invite link while the cart is open." }
    : { title: "You were removed from this cart", text: "The host removed you, and your items were taken out. The invite link won't let you back in; ask the host if you should be in it." };
  ui.screen = "message";
  ui.messages.clear();
  render();
  focusFirst("#notice h1");
}

const PAYMENT_LABEL = {
  none: ["Not paid yet", ""], pending: ["Paying…", "warn"], authorized: ["Card held", "ok"],
  cod_committed: ["Cash on delivery", "ok"], paid_online: ["Paid online", "ok"], failed: ["Payment failed", "bad"],
  refunded: ["Refunded", "warn"], review: ["Under review", "bad"],
};

const STATUS_LABEL = {
  open: "Open", locked: "Locked — paying", ready_to_confirm: "Ready to confirm",
  converted: "Ordered", expired: "Expired", cancelled: "Cancelled",
};

const SETTLED = new Set(["cod_committed", "paid_online", "authorized"]);
const INACTIVE = new Set(["none", "failed", "refunded"]); // nobody has paid, committed or is paying
const UNPAID = new Set(["none", "failed"]); // a guest the host may still cover or remove

function mine(state) {
  return (state && state.cart && state.cart.members.find((m) => m.user_id === session.userId)) || { payment: { status: "none" }, share_minor: 0, owes_minor: 0, subtotal_minor: 0 };
}

function cartContext() {
  const state = cartScreen;
  if (!state || !state.cart) return {};
  return { isHost: state.cart.host_user_id === session.userId, currency: state.cart.currency, cod: takes(state).cod, online: takes(state).online };
}

// The parts of each member's share: their items, then fee, tax, tip and discount split as the
// server splits the total (largest remainder by subtotal), and any rounding left over.
function breakdowns(cart) {
  const weights = cart.members.map((m) => m.subtotal_minor);
  const parts = {};
  for (const name of ["delivery_fee_minor", "tax_minor", "tip_minor", "discount_minor"]) parts[name] = split(cart[name], weights);
  return new Map(cart.members.map((m, i) => {
    const items = m.subtotal_minor;
    const fee = parts.delivery_fee_minor[i]; const tax = parts.tax_minor[i]; const tip = parts.tip_minor[i]; const discount = parts.discount_minor[i];
    return [m.user_id, { items, fee, tax, tip, discount, rounding: m.share_minor - (items + fee + tax + tip - discount) }];
  }));
}

// "What happens next, and who are we waiting for?"
function statusStrip(cart, me, isHost, money) {
  const host = cart.members.find((m) => m.role === "host");
  const hostName = host ? host.display_name : "the host";
  const lines = [];
  let headline;
  if (cart.status === "open") {
    const ready = cart.members.filter((m) => m.ready);
    const notReady = cart.members.filter((m) => !m.ready && m.user_id !== session.userId).map((m) => m.display_name);
    const count = `${ready.length} of ${cart.members.length} ready`;
    if (cart.items.length === 0) headline = `${count}. Nobody has added anything yet: pick from the menu.`;
    else if (isHost) headline = ready.length === cart.members.length ? `${count}. Everyone is ready: lock the cart to split the bill.` : `${count}. ${notReady.length ? `Waiting for ${names(notReady)} to be ready` : "Mark yourself ready"}, or lock now if you're all done.`;
    else headline = me.ready ? `${count}. You're ready; ${notReady.length ? `waiting for ${names(notReady)}, then ` : ""}${hostName} locks the cart.` : `${count}. Add your items, then press "I'm ready". ${hostName} locks the cart when everyone's done.`;
  } else if (cart.status === "locked") {
    const owing = cart.members.filter((m) => m.owes_minor > 0 && !SETTLED.has(m.payment.status));
    const settled = cart.members.filter((m) => m.owes_minor > 0).length - owing.length;
    headline = `${settled} of ${settled + owing.length} paid or paying cash.${owing.length ? ` Waiting for ${names(owing.map((m) => (m.user_id === session.userId ? "you" : m.display_name)))}.` : ""}`;
    for (const m of owing) {
      const state = m.payment.status === "pending" ? "paying now" : m.payment.status === "failed" ? "card declined" : "unpaid";
      lines.push(h("li", { "data-key": `owe-${m.user_id}`, "data-owing": m.display_name }, `${m.user_id === session.userId ? "You" : m.display_name}: ${money(m.owes_minor)} ${state}`));
    }
  } else if (cart.status === "ready_to_confirm") {
    const cash = cart.members.some((m) => m.payment.status === "cod_committed");
    const held = cart.members.some((m) => m.payment.status === "authorized");
    const everyone = `Everyone has paid${held ? cash ? ", had their card held" : " or had their card held" : ""}${cash ? " or chosen cash on delivery" : ""}`;
    headline = isHost ? `${everyone}. Enter the delivery address below and confirm the order.` : `${everyone}. Waiting for ${hostName} to confirm the order.`;
  } else if (cart.status === "converted") headline = "The order is placed.";
  else if (cart.status === "cancelled") headline = `${hostName} cancelled this cart. Online payments are refunded.`;
  else headline = "This cart expired. Online payments are refunded.";
  return h("section", { class: "card strip", id: "status-strip", "data-key": "strip", "aria-labelledby": "strip-title" },
    h("h2", { class: "visually-hidden", id: "strip-title" }, "What happens next"),
    h("p", { class: "headline", id: "strip-headline" }, headline),
    lines.length ? h("ul", { class: "owing", id: "owing" }, lines) : null,
    cart.order_id ? h("p", {}, h("a", { href: `/#/orders/${cart.order_id}`, id: "order-link" }, "See the order")) : null,
    slot("strip"));
}

function cartScreenView() {
  const state = cartScreen;
  const cart = state.cart;
  const me = mine(state);
  const isHost = cart.host_user_id === session.userId;
  const money = (minor) => formatMoney(minor, cart.currency);
  const conn = { connecting: ["Connecting…", "warn"], live: ["Live", "ok"], reconnecting: ["Reconnecting…", "warn"], offline: ["Offline — retrying", "bad"] }[state.conn];
  const head = h("section", { class: "card head", "data-key": "head" },
    h("div", { class: "spread" },
      h("h1", {}, state.store ? state.store.name : "Group cart"),
      h("span", { class: "badge", id: "cart-status", "data-status": cart.status }, STATUS_LABEL[cart.status] || cart.status)),
    h("p", { class: `conn ${conn[1]}`, id: "conn", "data-conn": state.conn, role: "status" }, h("span", { class: "dot", "aria-hidden": "true" }), conn[0]),
    cart.deadline ? h("p", { class: "muted" }, `Closes ${new Date(cart.deadline).toLocaleString()}`) : null);
  const qr = state.qr;
  const invite = cart.status === "open" ? h("section", { class: "card", id: "invite", "data-key": "invite" },
    h("label", { for: "invite-link" }, "Invite link: send it to the group"),
    h("div", { class: "row nowrap" },
      h("input", { id: "invite-link", readonly: true, value: `${window.location.origin}/join/${cart.invite_code}`, class: "invite" }),
      h("button", { class: "secondary", "data-action": "copy-invite" }, "Copy")),
    h("div", { class: "row" },
      h("button", { class: "link", id: "show-qr", "data-action": "toggle-qr", "aria-expanded": String(qr.open), "aria-controls": qr.open ? "invite-qr" : null }, qr.open ? "Hide the QR code" : "Show a QR code"),
      isHost ? h("button", { class: "link", id: "rotate-invite", "data-action": "rotate-invite", "aria-disabled": busy("invite") }, "New invite link") : null),
    qr.open ? h("div", { class: "qr", id: "invite-qr", "data-key": "invite-qr" },
      qr.url && qr.code === cart.invite_code
        ? h("img", { src: qr.url, id: "invite-qr-img", width: "180", height: "180", alt: "QR code of the invite link: scan it with a phone's camera to join" })
        : h("p", { class: "muted small" }, "Drawing the QR code…"),
      slot("qr")) : null,
    slot("invite")) : null;
  const sideCol = h("div", { class: "col col-side", "data-key": "col-side" },
    head, statusStrip(cart, me, isHost, money), invite, youSection(state, me, isHost, money),
    isHost ? whoPays(state, money) : null, isHost ? hostTools(state, me, money) : null);
  const restCol = h("div", { class: "col col-rest", "data-key": "col-rest" },
    cart.status === "open" ? menu(state, money) : null, group(state, isHost, money), totals(cart, money));
  const bar = h("div", { class: "my-bar", id: "my-bar", "data-key": "bar" },
    h("span", {}, cart.status === "open"
      ? `Your items: ${cart.items.filter((i) => i.user_id === session.userId).reduce((n, i) => n + i.quantity, 0)} · ${money(me.subtotal_minor)}`
      : me.owes_minor === 0 && me.payment.status === "none" ? "You have nothing to pay"
        : `You pay: ${money(me.owes_minor)} · ${(PAYMENT_LABEL[me.payment.status] || [me.payment.status])[0]}`),
    h("button", { class: "secondary small", "data-action": "to-you" }, cart.status === "locked" && me.owes_minor > 0 && !SETTLED.has(me.payment.status) ? "Pay" : "Your items"));
  return [h("div", { class: "layout", "data-key": "layout" }, sideCol, restCol), bar];
}

ACTIONS["to-you"] = () => {
  const you = document.getElementById("you-title");
  if (you) { you.scrollIntoView({ block: "start" }); you.focus({ preventScroll: true }); }
};

ACTIONS["toggle-qr"] = () => {
  const state = cartScreen;
  state.qr.open = !state.qr.open;
  unsay("qr");
  render();
  if (state.qr.open && state.qr.code !== state.cart.invite_code) act("qr", () => loadQr(state));
};

// The invite's QR code is an image the server draws (members only, so it is fetched with the
// token and shown from a blob URL).
async function loadQr(state) {
  const code = state.cart.invite_code;
  if (state.qr.loading === code) return;
  state.qr.loading = code;
  try {
    let response;
    try {
      response = await fetch(`/api/v1/teamcarts/${state.cartId}/invite.svg`, { headers: { Authorization: `Bearer ${session.token}` } });
    } catch {
      throw new ApiError(0, { code: "offline", detail: OFFLINE });
    }
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const blob = new Blob([await response.text()], { type: "image/svg+xml" });
    if (cartScreen !== state) return;
    if (state.qr.url) URL.revokeObjectURL(state.qr.url);
    Object.assign(state.qr, { code, url: URL.createObjectURL(blob) });
    render();
  } finally {
    if (state.qr.loading === code) state.qr.loading = null;
  }
}

ACTIONS["rotate-invite"] = () => {
  if (!window.confirm("Make a new invite link? The old link stops working; everyone already in the cart stays.")) return;
  const state = cartScreen;
  act("invite", async () => {
    adopt(state, await api("POST", `/api/v1/teamcarts/${state.cartId}/invite/rotate`));
    if (state.qr.open) loadQr(state).catch(() => {});
    say("invite", "New invite link made: the old one no longer works. Send the group this one.", "ok");
  });
};

ACTIONS["copy-invite"] = async () => {
  const field = document.getElementById("invite-link");
  try { await navigator.clipboard.writeText(field.value); say("invite", "Invite link copied. Paste it to the group.", "ok"); }
  catch { field.select(); say("invite", "Select the link and copy it.", "info"); }
};

function youSection(state, me, isHost, money) {
  const cart = state.cart;
  const myItems = cart.items.filter((i) => i.user_id === session.userId);
  const open = cart.status === "open";
  const children = [h("h2", { id: "you-title" }, "You")];
  children.push(myItems.length === 0 ? h("p", { class: "muted" }, open ? "You haven't added anything yet." : "You have no items in this cart.")
    : h("ul", { class: "plain", id: "my-items" }, myItems.map((item) => h("li", { "data-key": `mine-${item.item_id}`, "data-item-id": item.item_id },
      h("div", { class: "spread" },
        h("span", {}, h("strong", {}, item.name), item.options.length ? ` (${item.options.join(", ")})` : ""),
        h("span", {}, money(item.line_total_minor))),
      open ? h("div", { class: "row" },
        h("label", { for: `qty-${item.item_id}`, class: "inline" }, "Quantity"),
        h("input", { type: "number", inputmode: "numeric", min: "1", max: "99", value: String(item.quantity), class: "qty", id: `qty-${item.item_id}`, "data-change": "item-qty", "data-item": item.item_id, "aria-describedby": `msg-item-${item.item_id}` }),
        h("button", { class: "secondary", "data-action": "remove-item", "data-item": item.item_id, "aria-label": `Remove ${item.name}`, "aria-disabled": busy(`item-${item.item_id}`) }, "Remove"))
        : h("div", { class: "muted" }, `${item.quantity} × ${money(item.unit_price_minor)}`),
      slot(`item-${item.item_id}`)))));
  if (open) {
    children.push(h("div", { class: "row" },
      h("button", { class: "secondary", id: "ready", "data-action": "ready", "aria-pressed": me.ready ? "true" : "false", "aria-disabled": busy("ready") }, me.ready ? "I'm ready ✓" : "I'm ready"),
      !isHost ? h("button", { class: "link", "data-action": "leave", id: "leave" }, "Leave the cart") : null), slot("ready"));
    if (!isHost) children.push(guestTerms(cart, me, money));
  } else {
    if (me.share_minor > 0 || me.owes_minor > 0 || me.payment.status !== "none") children.push(shareBreakdown(cart, me, isHost, money));
    if (me.owes_minor === 0 && me.payment.status === "none") {
      if (cart.status !== "converted") children.push(h("p", { class: "ok-text", id: "nothing-to-pay" }, nothingToPay(cart, me, isHost)));
    } else {
      children.push(payArea(state, me, isHost, money));
    }
  }
  return h("section", { class: "card you", id: "you", "data-key": "you", "aria-labelledby": "you-title" }, children);
}

// While the cart is open, what the host decided about who pays, as it bears on a guest.
function guestTerms(cart, me, money) {
  const lines = [];
  if (cart.payment_mode === "host_pays") lines.push("The host pays for everyone: you won't pay anything.");
  else if (cart.allowance_minor !== null && cart.allowance_minor > 0) lines.push(`The host pays up to ${money(cart.allowance_minor)} of your share.`);
  if (cart.spending_limit_minor !== null) lines.push(`Your items may come to at most ${money(cart.spending_limit_minor)} (now ${money(me.subtotal_minor)}).`);
  if (cart.capture === "on_confirm") lines.push("Paying by card only holds the amount; it's charged when the host confirms the order.");
  return lines.length ? h("ul", { class: "terms", id: "my-terms", "data-key": "my-terms" }, lines.map((line, i) => h("li", { "data-key": `t-${i}` }, line))) : null;
}

function nothingToPay(cart, me, isHost) {
  if (me.covered) return "The host covers your share: you have nothing to pay.";
  if (!isHost && cart.payment_mode === "host_pays") return "The host pays for everyone: you have nothing to pay.";
  if (!isHost && cart.allowance_minor && me.share_minor > 0) return "The host's allowance covers your share: you have nothing to pay.";
  return "You have nothing to pay.";
}

const signed = (minor, money) => (minor < 0 ? `−${money(-minor)}` : money(minor));

// What a member pays against their share: the host paying for everyone, a cover or the
// allowance (for a guest), what the host takes on for the guests, and an amount kept as it was
// paid or committed before the bill changed. [label, amount] pairs summing to owes − share.
function adjustments(cart, m, you) {
  const rows = [];
  const share = m.share_minor;
  if (m.role === "host") {
    const more = m.owes_minor - share;
    if (more > 0) rows.push([you ? "What you pay for the guests" : "Paying for the guests", more]);
    else if (more < 0) rows.push(["Evened out against what others already paid", more]);
    return rows;
  }
  let expected = share;
  if (m.covered) { rows.push(["Covered by the host", -share]); expected = 0; }
  else if (cart.payment_mode === "host_pays") { rows.push(["The host pays for everyone", -share]); expected = 0; }
  else if (cart.allowance_minor) {
    expected = Math.max(0, share - cart.allowance_minor);
    if (expected !== share) rows.push(["Allowance from the host", expected - share]);
  }
  if (m.owes_minor !== expected) rows.push([you ? "Kept at what you already paid or chose" : "Kept at what they already paid or chose", m.owes_minor - expected]);
  return rows;
}

// Your items, your part of the rest, then what the host takes off: what you pay.
function shareBreakdown(cart, me, isHost, money) {
  const extra = me.share_minor - me.subtotal_minor;
  const parts = [["delivery_fee_minor", "delivery"], ["tax_minor", "tax"], ["tip_minor", "tip"]].filter(([name]) => cart[name]).map(([, word]) => word);
  const rest = parts.length ? `${names(parts)}${cart.discount_minor ? ", less the discount" : ""}` : cart.discount_minor ? "the discount" : "the rest";
  const moves = adjustments(cart, me, true);
  const row = (label, value, cls = null, key = label) => h("tr", { class: cls, "data-key": key }, h("th", { scope: "row" }, label), h("td", {}, value));
  return h("table", { class: "totals", id: "my-share", "data-key": "my-share" }, h("caption", { class: "visually-hidden" }, "What you pay"), h("tbody", {},
    row("Your items", money(me.subtotal_minor), null, "items"),
    extra ? row(`Your part of ${rest}`, signed(extra, money), null, "extra") : null,
    moves.length ? [row("Your share", money(me.share_minor), "sub", "share"), moves.map(([label, value]) => row(label, signed(value, money), "move"))] : null,
    row("You pay", money(me.owes_minor), "total", "owes")));
}

function breakdownRows(b, money, itemsLabel = "Your items") {
  return [
    h("tr", {}, h("th", { scope: "row" }, itemsLabel), h("td", {}, money(b.items))),
    b.fee ? h("tr", {}, h("th", { scope: "row" }, "Part of delivery"), h("td", {}, money(b.fee))) : null,
    b.tax ? h("tr", {}, h("th", { scope: "row" }, "Part of tax"), h("td", {}, money(b.tax))) : null,
    b.tip ? h("tr", {}, h("th", { scope: "row" }, "Part of tip"), h("td", {}, money(b.tip))) : null,
    b.discount ? h("tr", {}, h("th", { scope: "row" }, "Part of discount"), h("td", {}, `−${money(b.discount)}`)) : null,
    b.rounding ? h("tr", {}, h("th", { scope: "row" }, "Rounding"), h("td", {}, money(b.rounding))) : null,
  ];
}

function payArea(state, me, isHost, money) {
  const cart = state.cart;
  const status = me.payment.status;
  const box = [];
  if (status === "cod_committed") box.push(h("p", { class: "ok-text" }, `You'll pay ${money(me.payment.amount_minor)} in cash on delivery.`));
  if (status === "paid_online") box.push(h("p", { class: "ok-text" }, `You paid ${money(me.payment.amount_minor)} online.`));
  if (status === "pending") box.push(h("p", { class: "muted" }, "Your card payment is being processed…"));
  if (status === "authorized") {
    box.push(h("p", { class: "ok-text", id: "card-held" }, `Card held — charged when ${isHost ? "you confirm" : "the host confirms"}: ${money(me.payment.amount_minor)}.`));
  }
  const canPay = cart.status === "locked" && me.owes_minor > 0 && ["none", "pending", "failed", "refunded"].includes(status);
  if (canPay && !state.methods) box.push(h("p", { class: "muted", id: "pay-methods", "data-key": "pay-methods" }, "Checking how this store takes payment…"));
  if (canPay && state.methods) {
    const { cod, online } = state.methods;
    const why = cod && online ? null
      : cod ? "This store takes cash on delivery only."
        : online ? "This store takes online payments only: pay by card."
          : "This store isn't taking payments now. Ask the host what to do.";
    if (why) box.push(h("p", { class: "muted", id: "pay-methods", "data-key": "pay-methods" }, why));
    if (online && cart.capture === "on_confirm") box.push(h("p", { class: "muted small" }, `Paying online only holds the amount on your card; it's charged when ${isHost ? "you confirm" : "the host confirms"} the order.`));
    if (cod || online) {
      box.push(h("div", { class: "row", "data-key": "pay-buttons" },
        cod ? h("button", { id: "pay-cod", "data-key": "pay-cod", "data-action": "pay-cod", "aria-disabled": busy("pay"), "aria-describedby": why ? "pay-methods" : null }, "Pay cash on delivery") : null,
        online ? h("button", { id: "pay-online", "data-key": "pay-online", class: cod ? "secondary" : null, "data-action": "pay-online", "aria-disabled": busy("pay"), "aria-describedby": why ? "pay-methods" : null }, "Pay online") : null));
    }
  }
  if (canPay) {
    if (state.payment) {
      box.push(h("form", { id: "card-form", "data-key": `card-${state.payment.id}`, "data-submit": "pay-card" },
        h("p", { class: "label", id: "card-label" }, "Card"),
        h("div", { id: "card-element", "data-key": `card-el-${state.payment.id}`, "data-foreign": true, role: "group", "aria-labelledby": "card-label" }),
        state.payment.emulator ? h("p", { class: "muted small" }, "Test mode: card 4242 4242 4242 4242 pays, 4000 0000 0000 0341 is declined; the year takes two digits.") : null,
        h("p", {}, h("button", { type: "submit", id: "pay-card", "aria-disabled": busy("pay") }, `Pay ${money(state.payment.amount_minor)}`))));
    }
  }
  if (SETTLED.has(status)) {
    if (cart.status === "locked") box.push(h("p", { class: "muted" }, isHost ? "You're settled. Once everyone is, you confirm the order." : "You're settled. The host confirms once everyone is."));
  }
  box.push(slot("pay"));
  return h("div", { class: "pay", id: "pay", "data-key": "pay" }, box);
}

function menu(state, money) {
  const cart = state.cart;
  const inCart = new Map();
  for (const item of cart.items) inCart.set(item.product_id, (inCart.get(item.product_id) || 0) + item.quantity);
  const products = state.products;
  return h("details", { class: "card menu", id: "catalog", "data-key": "catalog", open: true, "data-own": true },
    h("summary", {}, h("h2", { class: "inline" }, "Menu"), products ? h("span", { class: "muted" }, ` · ${products.length} dishes`) : null),
    products === null ? h("p", { class: "muted" }, "Loading the menu…")
      : products.map((product) => {
        const claimed = inCart.get(product.id) || 0;
        const left = product.stock === null ? null : product.stock - claimed;
        const stock = product.stock === null ? null
          : left <= 0 ? `None left${claimed ? ` (${claimed} in this cart)` : ""}`
            : `${left} left${claimed ? ` · ${claimed} in this cart` : ""}`;
        const soldOut = left !== null && left <= 0;
        const key = `add-${product.id}`;
        return h("div", { class: "product", "data-key": `p-${product.id}`, "data-product-name": product.name, role: "group", "aria-labelledby": `pn-${product.id}` },
          h("div", { class: "spread" }, h("h3", { id: `pn-${product.id}` }, product.name), h("span", {}, money(product.price_minor))),
          stock ? h("p", { class: `stock ${soldOut ? "bad-text" : "muted"}`, "data-stock": String(left) }, stock) : null,
          product.option_groups.map((group, g) => optionGroup(product, group, g, cart.currency)),
          h("div", { class: "row" },
            h("label", { for: `add-qty-${product.id}`, class: "inline" }, "Quantity", h("span", { class: "visually-hidden" }, ` of ${product.name}`)),
            h("input", { type: "number", inputmode: "numeric", min: "1", max: "99", value: "1", class: "qty", id: `add-qty-${product.id}`, "data-own": true, "aria-describedby": `msg-${key}` }),
            h("button", { "data-action": "add", "data-product": product.id, "aria-disabled": busy(key), "data-left": left === null ? null : String(left) }, `Add ${product.name}`)),
          slot(key));
      }));
}

function optionGroup(product, group, g, currency) {
  const single = group.max === 1;
  const rule = group.min === 0 ? (single ? "optional" : `up to ${group.max}`) : group.min === group.max ? `choose ${group.min}` : `choose ${group.min}–${group.max}`;
  const name = `o-${product.id}-${g}`;
  const options = group.options.map((option, o) => {
    const id = `${name}-${o}`;
    return h("label", { for: id, class: "choice", "data-key": id },
      h("input", { type: single ? "radio" : "checkbox", id, name, value: option.name, "data-own": true }),
      ` ${option.name}${option.price_delta_minor ? ` (+${formatMoney(option.price_delta_minor, currency)})` : ""}`);
  });
  if (single && group.min === 0) {
    const id = `${name}-none`;
    options.unshift(h("label", { for: id, class: "choice", "data-key": id },
      h("input", { type: "radio", id, name, value: "", checked: true, "data-own": true }), ` No ${group.name.toLowerCase()}`));
  }
  return h("fieldset", { "data-key": name }, h("legend", {}, `${group.name} (${rule})`), options);
}

function resetProduct(block) {
  for (const input of block.querySelectorAll("input[type=checkbox], input[type=radio]")) input.checked = input.value === "" && input.type === "radio";
  const qty = block.querySelector("input.qty");
  if (qty) qty.value = "1";
}

// The cart on screen: a group's (its changes come back over its socket) or your own (the
// answer is its new state: nobody else changes it).
const here = () => (ui.screen === "shop" ? shop : cartScreen);
async function changeCart(state, method, path, body) {
  const own = state === shop;
  try {
    const answer = await api(method, `/api/v1/${own ? "carts" : "teamcarts"}/${state.cartId}${path}`, body);
    if (own && shop === state && answer && answer.items) state.cart = answer;
    return answer;
  } catch (error) {
    if (own && error.code === "out_of_stock") loadShopCatalog(state);
    throw error;
  }
}

ACTIONS.add = (button) => {
  const state = here();
  const productId = button.dataset.product;
  const product = state.products.find((p) => p.id === productId);
  const block = button.closest(".product");
  const key = `add-${productId}`;
  const qtyText = block.querySelector("input.qty").value.trim();
  const quantity = Number(qtyText);
  if (!/^\d+$/.test(qtyText) || quantity < 1 || quantity > 99) { say(key, "Choose a quantity from 1 to 99."); return; }
  const left = button.dataset.left === undefined ? null : Number(button.dataset.left);
  if (left !== null && quantity > left) {
    say(key, left <= 0 ? `No ${product.name} left for this cart.` : `Only ${left} ${product.name} left for this cart.`);
    return;
  }
  const options = [...block.querySelectorAll("input:checked")].map((i) => i.value).filter(Boolean);
  for (const [g, group] of product.option_groups.entries()) {
    const picked = [...block.querySelectorAll(`input[name="o-${productId}-${g}"]:checked`)].filter((i) => i.value).length;
    if (picked < group.min) { say(key, `Choose ${group.min === 1 ? "a" : group.min} ${group.name.toLowerCase()} first.`); return; }
    if (picked > group.max) { say(key, `Choose at most ${group.max} ${group.name.toLowerCase()}.`); return; }
  }
  act(key, async () => {
    await changeCart(state, "POST", "/items", { product_id: productId, quantity, options });
    resetProduct(block);
    say(key, `Added ${quantity} × ${product.name}.`, "ok");
  }, { shop: state === shop });
};

CHANGES["item-qty"] = (input) => {
  const state = here();
  const itemId = input.dataset.item;
  const item = state.cart.items.find((i) => i.item_id === itemId);
  const key = `item-${itemId}`;
  const text = input.value.trim();
  const quantity = Number(text);
  if (!item) return;
  if (!/^\d+$/.test(text) || quantity < 1 || quantity > 99) {
    input.value = String(item.quantity);
    say(key, `Quantities go from 1 to 99; kept ${item.quantity}. To take it out, press Remove.`);
    return;
  }
  if (quantity === item.quantity) return; // put back after a refusal, or typed as it was: nothing to send
  act(key, async () => {
    try {
      await changeCart(state, "PATCH", `/items/${itemId}`, { quantity });
    } catch (error) {
      input.value = String(item.quantity);
      throw error;
    }
  }, { shop: state === shop });
};

ACTIONS["remove-item"] = (button) => {
  const state = here();
  const item = state.cart.items.find((i) => i.item_id === button.dataset.item);
  act(`item-${button.dataset.item}`, async () => {
    await changeCart(state, "DELETE", `/items/${button.dataset.item}`);
    if (state === shop && item) announce(`Removed ${item.name} from your cart.`);
  });
};
ACTIONS.ready = () => act("ready", () => api("PUT", `/api/v1/teamcarts/${cartScreen.cartId}/ready`, { ready: !mine(cartScreen).ready }));
ACTIONS.leave = () => act("ready", async () => {
  if (!window.confirm("Leave this cart? Your items go with you.")) return;
  const state = cartScreen;
  state.left = true;
  await api("DELETE", `/api/v1/teamcarts/${state.cartId}/members/${session.userId}`);
  // The cart's own update may have beaten the answer here and already said so.
  if (cartScreen === state) removedFromCart();
});

function group(state, isHost, money) {
  const cart = state.cart;
  const parts = cart.status === "open" ? null : breakdowns(cart);
  const ready = cart.members.filter((m) => m.ready).length;
  return h("section", { class: "card", id: "group", "data-key": "group", "aria-labelledby": "group-title" },
    h("h2", { id: "group-title" }, `Who's in (${cart.members.length})`, cart.status === "open" ? h("span", { class: "muted" }, ` · ${ready} ready`) : null),
    h("ul", { class: "plain", id: "members" }, cart.members.map((member) => {
      const online = state.online.has(member.user_id);
      const items = cart.items.filter((i) => i.user_id === member.user_id);
      const owesNothing = cart.status !== "open" && member.owes_minor === 0 && member.payment.status === "none";
      const free = member.covered ? "Covered by the host" : member.role !== "host" && cart.payment_mode === "host_pays" ? "The host pays" : "Nothing to pay";
      const [label, tone] = owesNothing ? [free, "ok"] : PAYMENT_LABEL[member.payment.status] || [member.payment.status, ""];
      const b = parts && parts.get(member.user_id);
      const you = member.user_id === session.userId;
      const moves = b ? adjustments(cart, member, you) : [];
      return h("li", { "data-key": `m-${member.user_id}`, "data-user-id": member.user_id, "data-name": member.display_name, class: "member" },
        h("div", { class: "spread" },
          h("span", { class: "who" },
            h("span", { class: `dot${online ? " on" : ""}`, "aria-hidden": "true" }),
            h("strong", {}, member.display_name),
            h("span", { class: "muted presence" }, online ? " online" : " offline"),
            member.role === "host" ? h("span", { class: "muted" }, " · host") : null,
            member.user_id === session.userId ? h("span", { class: "muted" }, " · you") : null),
          h("span", {}, money(cart.status === "open" ? member.subtotal_minor : member.owes_minor))),
        h("div", { class: "row tags" },
          cart.status === "open" ? h("span", { class: `badge ${member.ready ? "ok" : ""} ready-badge` }, member.ready ? "Ready" : "Still choosing") : h("span", { class: `badge payment ${tone}` }, label),
          isHost && cart.status === "open" && member.role !== "host"
            ? h("button", { class: "link danger-text", "data-action": "remove-member", "data-user": member.user_id, "data-name": member.display_name, "aria-label": `Remove ${member.display_name} from the cart` }, "Remove")
            : null),
        items.length ? h("ul", { class: "items" }, items.map((item) => h("li", { "data-key": `i-${item.item_id}`, "data-item-id": item.item_id, class: "spread" },
          h("span", {}, `${item.quantity} × ${item.name}${item.options.length ? ` (${item.options.join(", ")})` : ""}`),
          h("span", { class: "muted" }, money(item.line_total_minor))))) : null,
        b && (member.share_minor > 0 || member.owes_minor > 0) ? h("details", { class: "breakdown", "data-key": `bd-${member.user_id}`, "data-own": true },
          h("summary", {}, `How ${you ? "your" : `${member.display_name}'s`} ${money(member.owes_minor)} adds up`),
          h("table", { class: "totals" }, h("tbody", {}, breakdownRows(b, money, "Items"),
            moves.length ? [
              h("tr", { class: "sub" }, h("th", { scope: "row" }, "Share"), h("td", {}, money(member.share_minor))),
              moves.map(([text, value]) => h("tr", {}, h("th", { scope: "row" }, text), h("td", {}, signed(value, money)))),
              h("tr", { class: "total" }, h("th", { scope: "row" }, you ? "You pay" : "Pays"), h("td", {}, money(member.owes_minor)))] : null))) : null,
        slot(`member-${member.user_id}`));
    })));
}

ACTIONS["remove-member"] = (button) => {
  if (!window.confirm(`Remove ${button.dataset.name} from the cart? Their items go with them, and the invite won't let them back in.`)) return;
  act(`member-${button.dataset.user}`, () => api("DELETE", `/api/v1/teamcarts/${cartScreen.cartId}/members/${button.dataset.user}`));
};

function totals(cart, money) {
  return h("section", { class: "card", "data-key": "totals", "aria-labelledby": "totals-title" },
    h("h2", { id: "totals-title" }, "Totals"),
    h("table", { class: "totals", id: "totals" }, h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "Subtotal"), h("td", {}, money(cart.subtotal_minor))),
      h("tr", {}, h("th", { scope: "row" }, "Delivery"), h("td", {}, money(cart.delivery_fee_minor))),
      cart.status !== "open" ? h("tr", {}, h("th", { scope: "row" }, "Tax"), h("td", {}, money(cart.tax_minor))) : null,
      cart.tip_minor ? h("tr", {}, h("th", { scope: "row" }, "Tip"), h("td", {}, money(cart.tip_minor))) : null,
      cart.discount_minor ? h("tr", {}, h("th", { scope: "row" }, "Discount"), h("td", {}, `−${money(cart.discount_minor)}`)) : null,
      h("tr", { class: "total" }, h("th", { scope: "row" }, cart.status === "open" ? "So far" : "Total"), h("td", {}, money(cart.total_minor))))),
    cart.status === "open" ? h("p", { class: "muted small" }, "Tax and each person's share are worked out when the host locks the cart.") : null);
}

// ---------------------------------------------------------------- who pays (the host's)

// Split or the host pays for everyone, an allowance per guest, a spending limit while open;
// after lock, each guest who hasn't paid can be covered or removed.
function whoPays(state, money) {
  const cart = state.cart;
  if (!["open", "locked", "ready_to_confirm"].includes(cart.status)) return null;
  const open = cart.status === "open";
  const changeable = open || (cart.status === "locked" && cart.members.every((m) => INACTIVE.has(m.payment.status)));
  const box = [h("h2", { id: "who-pays-title" }, "Who pays")];
  if (changeable) {
    const mode = state.modeDraft || cart.payment_mode;
    const choice = (value, text) => h("label", { class: "choice", for: `mode-${value}`, "data-key": `mode-${value}` },
      h("input", { type: "radio", id: `mode-${value}`, name: "payment-mode", value, checked: mode === value, "data-change": "payment-mode", "aria-describedby": "msg-mode" }), ` ${text}`);
    box.push(h("fieldset", { "data-key": "mode", id: "payment-mode" },
      h("legend", {}, "The bill"), choice("split", "Everyone pays their own share"), choice("host_pays", "I pay for everyone")), slot("mode"));
    if (mode === "split") box.push(amountSetting(state, "allowance", money));
    if (open) box.push(amountSetting(state, "limit", money));
  } else {
    box.push(h("p", { id: "who-pays-now" }, cart.payment_mode === "host_pays" ? "You pay for everyone."
      : cart.allowance_minor ? `Everyone pays their own share; you pay up to ${money(cart.allowance_minor)} of each guest's.` : "Everyone pays their own share."),
    cart.status === "locked" ? h("p", { class: "muted small" }, "Someone has paid or chosen cash, so this can't change now.") : null);
  }
  if (!open) {
    const guests = cart.members.filter((m) => m.role !== "host" && UNPAID.has(m.payment.status));
    box.push(h("h3", { id: "unpaid-title" }, "Guests who haven't paid"),
      guests.length === 0 ? h("p", { class: "muted" }, "Every guest has paid or chosen cash.")
        : h("ul", { class: "plain", id: "unpaid-guests", "aria-labelledby": "unpaid-title" }, guests.map((m) => {
          const key = `guest-${m.user_id}`;
          return h("li", { "data-key": `ug-${m.user_id}`, "data-name": m.display_name },
            h("div", { class: "spread" }, h("strong", {}, m.display_name),
              h("span", {}, m.covered ? "Covered by you" : m.owes_minor ? `owes ${money(m.owes_minor)}${m.payment.status === "failed" ? " · card declined" : ""}` : "owes nothing")),
            h("div", { class: "row" },
              cart.status === "locked" && !m.covered && m.owes_minor > 0
                ? h("button", { class: "secondary small", "data-action": "cover", "data-user": m.user_id, "aria-label": `Cover ${m.display_name}'s share`, "aria-disabled": busy(key) }, "Cover") : null,
              h("button", { class: "secondary small danger", "data-action": "remove-guest", "data-user": m.user_id, "aria-label": `Remove ${m.display_name} from the cart`, "aria-disabled": busy(key) }, "Remove")),
            slot(key));
        })),
      slot("guests"));
  }
  return h("section", { class: "card", id: "who-pays", "data-key": "who-pays", "aria-labelledby": "who-pays-title" }, box);
}

const SETTINGS = {
  allowance: { path: "allowance", field: "allowance_minor", label: "Allowance per guest", clear: "No allowance",
    now: (m) => (m ? `You pay up to ${m} of each guest's share.` : "None now: each guest pays their whole share."),
    done: (m) => (m ? `Each guest now gets up to ${m} from you.` : "No allowance now: each guest pays their whole share.") },
  limit: { path: "spending-limit", field: "spending_limit_minor", label: "Spending limit per guest", clear: "No limit",
    now: (m) => (m ? `Each guest's items may come to at most ${m}.` : "None now: guests may add as much as they like."),
    done: (m) => (m ? `Each guest's items may now come to at most ${m}.` : "No spending limit now.") },
};

function amountSetting(state, kind, money) {
  const cart = state.cart;
  const setting = SETTINGS[kind];
  const current = cart[setting.field];
  return h("form", { "data-submit": "amount-setting", "data-kind": kind, novalidate: true, "data-key": `${kind}-form`, class: "setting" },
    h("label", { for: kind }, `${setting.label} (${cart.currency})`),
    h("div", { class: "row" },
      h("input", { id: kind, inputmode: "decimal", class: "qty", autocomplete: "off", "data-own": true, value: current === null ? "" : plainAmount(current, cart.currency), "aria-describedby": `${kind}-now msg-${kind}` }),
      h("button", { type: "submit", class: "secondary", "aria-disabled": busy(kind) }, kind === "allowance" ? "Set allowance" : "Set limit"),
      current !== null ? h("button", { type: "button", class: "link", "data-action": "clear-setting", "data-kind": kind, "aria-disabled": busy(kind) }, setting.clear) : null),
    h("p", { class: "muted small msg", id: `${kind}-now` }, setting.now(current === null ? null : money(current))),
    slot(kind));
}

CHANGES["payment-mode"] = (input) => {
  const state = cartScreen;
  if (ui.busy.has("mode")) { render(); return; } // one change at a time: the radios show what's on its way
  if (!input.checked || input.value === state.cart.payment_mode) return;
  state.modeDraft = input.value;
  act("mode", async () => {
    try {
      adopt(state, await api("PUT", `/api/v1/teamcarts/${state.cartId}/payment-mode`, { mode: input.value }));
    } finally {
      state.modeDraft = null;
    }
    say("mode", input.value === "host_pays" ? "You pay for everyone now: the guests owe nothing." : "Everyone pays their own share now.", "ok");
  });
};

SUBMITS["amount-setting"] = (form) => {
  const cart = cartScreen.cart;
  const kind = form.dataset.kind;
  const input = form.querySelector("input");
  const text = input.value.trim();
  const amount = text === "" ? null : parseAmount(text, cart.currency);
  if (text !== "" && amount === null) {
    say(kind, `Enter the amount in ${cart.currency}, like ${plainAmount(10 ** (minorDigits(cart.currency) + 1), cart.currency)}, or leave it empty for none.`);
    return;
  }
  setAmount(kind, amount, input);
};
ACTIONS["clear-setting"] = (button) => setAmount(button.dataset.kind, null, document.getElementById(button.dataset.kind));

function setAmount(kind, amount, input) {
  const state = cartScreen;
  const setting = SETTINGS[kind];
  act(kind, async () => {
    adopt(state, await api("PUT", `/api/v1/teamcarts/${state.cartId}/${setting.path}`, { amount_minor: amount }));
    if (input) input.value = amount === null ? "" : plainAmount(amount, state.cart.currency);
    say(kind, setting.done(amount === null ? null : formatMoney(amount, state.cart.currency)), "ok");
  });
}

ACTIONS.cover = (button) => {
  const state = cartScreen;
  const guest = state.cart.members.find((m) => m.user_id === button.dataset.user);
  if (!guest) return;
  const money = formatMoney(guest.owes_minor, state.cart.currency);
  if (!window.confirm(`Pay ${guest.display_name}'s ${money} yourself? ${guest.display_name} will owe nothing, and what you pay goes up by ${money}.`)) return;
  act(`guest-${guest.user_id}`, async () => {
    adopt(state, await api("POST", `/api/v1/teamcarts/${state.cartId}/members/${guest.user_id}/cover`));
    say(`guest-${guest.user_id}`, `You cover ${guest.display_name}'s share now.`, "ok");
  }, { about: guest.display_name });
};

ACTIONS["remove-guest"] = (button) => {
  const state = cartScreen;
  const guest = state.cart.members.find((m) => m.user_id === button.dataset.user);
  if (!guest) return;
  if (!window.confirm(`Remove ${guest.display_name} from the cart? Their items come out, the bill is split again among the rest, and the invite won't let them back in.`)) return;
  act(`guest-${guest.user_id}`, async () => {
    await api("DELETE", `/api/v1/teamcarts/${state.cartId}/members/${guest.user_id}`);
    say("guests", `${guest.display_name} is out of the cart; the bill is split again.`, "ok");
  }, { about: guest.display_name });
};

// ---------------------------------------------------------------- the host's tools

const TIP_WARN_BPS = 2500; // above a quarter of the subtotal, say so before sending

function hostTools(state, me, money) {
  const cart = state.cart;
  const box = [h("h2", { id: "host-title" }, "Host")];
  if (cart.status === "open") {
    const notReady = cart.members.filter((m) => !m.ready && m.user_id !== session.userId).map((m) => m.display_name);
    if (state.lockAnyway && notReady.length) {
      box.push(h("p", { class: "warn-text", id: "lock-warning" }, `${names(notReady)} ${notReady.length === 1 ? "isn't" : "aren't"} ready yet. Lock anyway? Nobody can change items after this.`),
        h("div", { class: "row" },
          h("button", { id: "lock-anyway", "data-action": "lock-now", "aria-disabled": busy("lock") }, "Lock anyway"),
          h("button", { class: "secondary", "data-action": "lock-wait" }, "Wait")));
    } else {
      box.push(h("p", {}, h("button", { id: "lock", "data-action": "lock", "aria-disabled": busy("lock") }, "Lock the cart and split the bill")));
    }
    box.push(slot("lock"));
  }
  const quiet = !cart.members.some((m) => m.payment.status !== "none" && m.payment.status !== "failed");
  if (cart.status === "locked" && quiet) {
    const maxBps = state.store && state.store.max_tip_bps !== undefined ? state.store.max_tip_bps : 10000;
    const draft = state.tipDraft;
    let hint = null;
    if (draft !== null && draft !== "") {
      const amount = parseAmount(draft, cart.currency);
      if (amount === null) hint = ["Enter an amount like 2.50.", "bad"];
      else if (amount * 10000 > cart.subtotal_minor * maxBps) hint = [`This store allows at most ${money(Math.floor((cart.subtotal_minor * maxBps) / 10000))} (${maxBps / 100} % of the subtotal).`, "bad"];
      else if (amount * 10000 > cart.subtotal_minor * TIP_WARN_BPS) hint = [`That's ${Math.round((amount * 100) / cart.subtotal_minor)} % of the subtotal. Sure?`, "warn"];
    }
    box.push(
      h("form", { "data-submit": "tip", novalidate: true, "data-key": "tip-form" },
        h("label", { for: "tip" }, `Tip (${cart.currency}, shared like the bill)`),
        h("div", { class: "row nowrap" },
          h("input", { id: "tip", inputmode: "decimal", value: plainAmount(cart.tip_minor, cart.currency), class: "qty wide", "data-own": true, "data-input": "tip", "aria-describedby": "tip-hint msg-tip", autocomplete: "off" }),
          h("button", { class: "secondary", type: "submit", "aria-disabled": busy("tip") }, "Set tip")),
        h("p", { id: "tip-hint", class: `msg ${hint ? hint[1] : ""}`, "aria-live": "polite" }, hint ? hint[0] : ""),
        slot("tip")),
      h("form", { "data-submit": "coupon", novalidate: true, "data-key": "coupon-form" },
        h("label", { for: "coupon" }, "Coupon"),
        h("div", { class: "row nowrap" },
          h("input", { id: "coupon", placeholder: "Code", class: "wide", "data-own": true, autocomplete: "off", "aria-describedby": "msg-coupon" }),
          h("button", { class: "secondary", type: "submit", "aria-disabled": busy("coupon") }, "Apply")),
        cart.discount_minor ? h("p", {}, h("button", { class: "link", "data-action": "remove-coupon" }, "Remove the coupon")) : null,
        slot("coupon")),
      h("p", {}, h("button", { class: "secondary", id: "unlock", "data-action": "unlock", "aria-disabled": busy("unlock") }, "Unlock to change items")), slot("unlock"));
  }
  if (cart.status === "ready_to_confirm") box.push(addressForm(cart));
  if (["open", "locked", "ready_to_confirm"].includes(cart.status)) {
    box.push(h("p", {}, h("button", { class: "danger", id: "cancel", "data-action": "cancel", "aria-disabled": busy("cancel") }, "Cancel the cart")), slot("cancel"));
  }
  if (box.length === 1) return null;
  return h("section", { class: "card", id: "host-tools", "data-key": "host", "aria-labelledby": "host-title" }, box);
}

ACTIONS.lock = () => {
  const cart = cartScreen.cart;
  if (cart.members.some((m) => !m.ready && m.user_id !== session.userId)) { cartScreen.lockAnyway = true; render(); focusFirst("#lock-anyway"); return; }
  ACTIONS["lock-now"]();
};
ACTIONS["lock-now"] = () => act("lock", async () => {
  await api("POST", `/api/v1/teamcarts/${cartScreen.cartId}/lock`);
  if (cartScreen) cartScreen.lockAnyway = false;
});
ACTIONS["lock-wait"] = () => { cartScreen.lockAnyway = false; render(); focusFirst("#lock"); };
INPUTS.tip = (input) => { cartScreen.tipDraft = input.value; render(); };
SUBMITS.tip = (form) => {
  const cart = cartScreen.cart;
  const amount = parseAmount(form.querySelector("#tip").value, cart.currency);
  if (amount === null) { say("tip", "Enter the tip as an amount, like 2.50."); return; }
  act("tip", async () => {
    await api("PUT", `/api/v1/teamcarts/${cartScreen.cartId}/tip`, { amount_minor: amount });
    cartScreen.tipDraft = null;
    say("tip", `Tip set to ${formatMoney(amount, cart.currency)}.`, "ok");
  });
};
SUBMITS.coupon = (form) => {
  const code = form.querySelector("#coupon").value.trim();
  if (!code) { say("coupon", "Type the coupon code first."); return; }
  act("coupon", async () => {
    await api("PUT", `/api/v1/teamcarts/${cartScreen.cartId}/coupon`, { code });
    say("coupon", `Coupon ${code.toUpperCase()} applied.`, "ok");
  });
};
ACTIONS["remove-coupon"] = () => act("coupon", () => api("DELETE", `/api/v1/teamcarts/${cartScreen.cartId}/coupon`));
ACTIONS.unlock = () => act("unlock", () => api("POST", `/api/v1/teamcarts/${cartScreen.cartId}/unlock`));
ACTIONS.cancel = () => {
  if (!window.confirm("Cancel this cart for everyone? Online payments are refunded.")) return;
  act("cancel", () => api("POST", `/api/v1/teamcarts/${cartScreen.cartId}/cancel`));
};

function addressForm(cart) {
  const field = (name, label, autocomplete, required = true) => [
    h("label", { for: `addr-${name}` }, label),
    h("input", { id: `addr-${name}`, name, required, autocomplete, "data-own": true, class: "wide" })];
  return h("form", { id: "confirm-form", "data-key": "confirm-form", "data-submit": "confirm", novalidate: true },
    h("h3", {}, "Deliver to"),
    field("line1", "Address", "address-line1"), field("line2", "Address line 2 (optional)", "address-line2", false),
    field("city", "City", "address-level2"), field("postal_code", "Postal code", "postal-code"),
    field("country", "Country (2 letters)", "country"),
    cart.capture === "on_confirm" ? h("p", { class: "muted small" }, "Confirming charges the cards held for this order.") : null,
    h("p", {}, h("button", { type: "submit", id: "confirm", "aria-disabled": busy("confirm") }, "Confirm the order")),
    slot("confirm"));
}

SUBMITS.confirm = (form) => {
  const data = Object.fromEntries(new FormData(form).entries());
  const missing = ["line1", "city", "postal_code", "country"].filter((name) => !String(data[name] || "").trim());
  if (missing.length) { say("confirm", "Fill in the address, city, postal code and country."); document.getElementById(`addr-${missing[0]}`).focus(); return; }
  if (!data.line2) delete data.line2;
  act("confirm", async () => {
    const result = await api("POST", `/api/v1/teamcarts/${cartScreen.cartId}/confirm`, { delivery_address: data });
    say("strip", `Order ${result.number} placed.`, "ok");
  });
};

// ---------------------------------------------------------------- paying

// Refused because the store has just turned that way of paying off: the buttons follow.
async function paying(state, request) {
  try {
    return await request();
  } catch (error) {
    if (error.code === "online_disabled" || error.code === "cod_disabled") {
      if (cartScreen === state) state.methods = { ...takes(state), unknown: false, [error.code === "online_disabled" ? "online" : "cod"]: false };
      loadMethods(state);
    }
    throw error;
  }
}

ACTIONS["pay-cod"] = () => act("pay", async () => {
  const state = cartScreen;
  state.payment = null;
  await paying(state, () => api("POST", `/api/v1/teamcarts/${state.cartId}/payments/cod`));
});

const loadedScripts = new Map();
function loadScript(src) {
  if (!loadedScripts.has(src)) {
    loadedScripts.set(src, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => { loadedScripts.delete(src); reject(new ApiError(0, { code: "stripe_unavailable", detail: "Couldn't load the card form. Check your connection and try again." })); };
      document.head.append(script);
    }));
  }
  return loadedScripts.get(src);
}

let paymentSerial = 0;
ACTIONS["pay-online"] = () => act("pay", async () => {
  const state = cartScreen;
  state.payment = null; // a new attempt gets a new card form: a declined one belonged to the old intent
  render();
  const payment = await paying(state, () => api("POST", `/api/v1/teamcarts/${state.cartId}/payments/online`));
  await loadScript(payment.stripe_js_url);
  const stripe = window.Stripe(payment.publishable_key);
  const card = stripe.elements().create("card");
  state.payment = { ...payment, id: ++paymentSerial, stripe, card, emulator: payment.confirm_on_server };
  render();
  const mount = document.getElementById("card-element");
  card.mount(mount);
  const first = mount.querySelector("input");
  if (first) first.focus();
});

SUBMITS["pay-card"] = () => {
  const state = cartScreen;
  const payment = state.payment;
  if (!payment) return;
  act("pay", async () => {
    try {
      await sendCard(state, payment);
    } catch (error) {
      if (error.code === "card_declined" && cartScreen === state) state.payment = null; // that intent is spent
      throw error;
    }
    say("pay", "Payment sent. Waiting for the bank's answer…", "info", () => ["none", "pending"].includes(mine(cartScreen).payment.status));
  });
};

async function sendCard(state, payment, confirmPath = `/api/v1/teamcarts/${state.cartId}/payments/online/confirm`) {
  if (payment.confirm_on_server) {
    // The emulator's Stripe.js tokenises the card and the server confirms (ADR 0006). Its
    // year field wants two digits; a person types four.
    const year = document.querySelector("#card-element input[placeholder=exp_year]");
    if (year && /^20\d\d$/.test(year.value.trim())) {
      year.value = year.value.trim().slice(2);
      year.dispatchEvent(new Event("input", { bubbles: true })); // the element reads its inputs on input
    }
    const { token, error } = await payment.stripe.createToken(payment.card);
    if (error || !token) throw new ApiError(400, { code: "card_invalid", detail: "Check the card number, the expiry month and year (MM and YY) and the CVC." });
    await api("POST", confirmPath, { payment_intent_id: payment.payment_intent_id, payment_method: token.card.id });
  } else {
    const { error } = await payment.stripe.confirmCardPayment(payment.client_secret, { payment_method: { card: payment.card } });
    if (error) throw new ApiError(402, { code: error.code === "card_declined" ? "card_declined" : "card_invalid", detail: error.message || "Check your card details." });
  }
}

// ---------------------------------------------------------------- shopping on your own: the shop, your cart, the checkout's steps

let shop = null; // { storeId, cartId, cart, store, products, step, payment, declined, order }
const STEPS = [["cart", "Cart"], ["address", "Address"], ["delivery", "Delivery"], ["payment", "Payment"]];
const STRIPE_JS = "https://js.stripe.com/v3/";
const ADDRESS_WORDS = { line1: "address", city: "city", postal_code: "postal code", country: "country" };

// Where a checkout picks up: the step after the last one the cart has done.
function stepOf(cart) {
  if (cart.status !== "open" || cart.state === "delivery" || cart.state === "payment") return "payment";
  if (cart.state === "address") return "delivery";
  return cart.items.length ? "address" : "cart";
}

// #/shop/<store>: your open cart there (the same one again) and the store's menu.
// #/checkout/<cart>: that cart's checkout, at the step it has reached.
async function openShop({ storeId = null, cartId = null }) {
  const state = { storeId, cartId, cart: null, store: null, products: null, step: "cart", payment: null, declined: null, order: null };
  shop = state;
  ui.screen = "loading";
  render();
  try {
    state.cart = cartId ? await api("GET", `/api/v1/carts/${cartId}`) : await api("POST", "/api/v1/carts", { store_id: storeId });
    if (state.cart.order_id) state.order = await api("GET", `/api/v1/orders/${state.cart.order_id}`).catch(() => null);
  } catch (error) {
    if (shop !== state) return;
    if (error.code === "unauthorized") { route(); return; }
    shop = null;
    ui.notice = { title: error.status === 404 ? "No such store or cart" : "Can't open this cart", text: words(error, { shop: true }) };
    ui.screen = "message";
    render();
    return;
  }
  if (shop !== state) return;
  const cart = state.cart;
  if (cart.status === "merged") { go(`/shop/${cart.store_id}`); return; } // it moved into an account's cart
  Object.assign(state, { cartId: cart.id, storeId: cart.store_id, step: cartId ? stepOf(cart) : "cart" });
  if (!session.account) localStorage.setItem("teamcart.shopped", "1"); // signing in brings it along
  ui.screen = "shop";
  render();
  focusFirst(state.step === "cart" ? "#shop-title" : "#step-title");
  if (ui.carried === cart.id) say("shop-cart", "Your cart came with you.", "ok", () => shop === state);
  else if (ui.carried && ui.carried.failed) say("shop-cart", `You're signed in, but your cart couldn't come with you: ${ui.carried.failed}`);
  ui.carried = null;
  loadShopCatalog(state);
}

async function loadShopCatalog(state) {
  try {
    const [store, products] = await Promise.all([
      state.store || api("GET", `/api/v1/stores/${state.storeId}`),
      api("GET", `/api/v1/stores/${state.storeId}/products`),
    ]);
    if (shop !== state) return;
    state.store = store;
    state.products = products.items;
    render();
  } catch { /* the menu stays as it was; the next out-of-stock answer or visit asks again */ }
}

function shopScreen() {
  const state = shop;
  const cart = state.cart;
  const money = (minor) => formatMoney(minor, cart.currency);
  const head = h("section", { class: "card head", "data-key": "shop-head", "aria-labelledby": "shop-title" },
    h("div", { class: "spread" }, h("h1", { id: "shop-title" }, state.store ? state.store.name : "Your cart"), h("span", { class: "muted" }, "Shopping on your own")),
    stepper(state));
  if (state.step === "cart") {
    const count = cart.items.reduce((n, i) => n + i.quantity, 0);
    const bar = h("div", { class: "my-bar", id: "my-bar", "data-key": "bar" },
      h("span", {}, `Your cart: ${count} · ${money(cart.subtotal_minor)}`),
      h("button", { class: "secondary small", "data-action": "to-cart" }, "Your cart"));
    return [head, h("div", { class: "layout shop", "data-key": "shop-layout" },
      h("div", { class: "col", "data-key": "shop-menu" }, menu(state, money)),
      h("div", { class: "col", "data-key": "shop-side" }, yourCart(state, money, true), session.account ? null : accountNote(state))), bar];
  }
  const step = { address: addressStep, delivery: deliveryStep, payment: paymentStep }[state.step](state, money);
  return [head, h("div", { class: "layout", "data-key": "checkout-layout" },
    h("div", { class: "col", "data-key": "checkout-step" }, step),
    h("div", { class: "col", "data-key": "checkout-cart" }, yourCart(state, money, false)))];
}

function stepper(state) {
  const at = STEPS.findIndex(([key]) => key === state.step);
  const back = state.cart.status === "open"; // once paying, the order is made: no going back
  return h("nav", { class: "steps", "aria-label": "Checkout steps", "data-key": "steps" },
    h("ol", { id: "steps" }, STEPS.map(([key, label], i) => {
      const done = i < at;
      const text = [h("span", { class: "step-n", "aria-hidden": "true" }, done ? "✓" : String(i + 1)),
        h("span", { class: "visually-hidden" }, `Step ${i + 1}: `), label, done ? h("span", { class: "visually-hidden" }, back ? ", done: go back to it" : ", done") : null];
      return h("li", { "data-key": `st-${key}`, "data-step": key, class: done ? "done" : i === at ? "now" : null, "aria-current": i === at ? "step" : null },
        done && back ? h("button", { class: "link", "data-action": "step", "data-step": key, "aria-label": `Step ${i + 1}: ${label}, done: go back to it` }, text) : h("span", {}, text));
    })));
}

function yourCart(state, money, editable) {
  const cart = state.cart;
  const count = cart.items.reduce((n, i) => n + i.quantity, 0);
  const open = editable && cart.status === "open";
  const method = cart.delivery_method;
  return h("section", { class: "card", id: "shop-cart", "data-key": "shop-cart", "aria-labelledby": "shop-cart-title" },
    h("h2", { id: "shop-cart-title" }, count ? `Your cart (${count} ${count === 1 ? "item" : "items"})` : "Your cart"),
    slot("shop-cart"),
    cart.items.length === 0 ? h("p", { class: "muted", id: "cart-empty" }, "Nothing here yet: add something from the menu.")
      : h("ul", { class: "plain", id: "cart-items" }, cart.items.map((item) => {
        const what = `${item.name}${item.options.length ? ` (${item.options.join(", ")})` : ""}`;
        return h("li", { "data-key": `ci-${item.item_id}`, "data-item-id": item.item_id, "data-name": item.name },
          h("div", { class: "spread" }, h("span", {}, h("strong", {}, item.name), item.options.length ? ` (${item.options.join(", ")})` : ""), h("span", {}, money(item.line_total_minor))),
          open ? h("div", { class: "row" },
            h("label", { for: `qty-${item.item_id}`, class: "inline" }, "Quantity", h("span", { class: "visually-hidden" }, ` of ${what} in your cart`)),
            h("input", { type: "number", inputmode: "numeric", min: "1", max: "99", value: String(item.quantity), class: "qty", id: `qty-${item.item_id}`, "data-change": "item-qty", "data-item": item.item_id, "aria-describedby": `msg-item-${item.item_id}` }),
            h("button", { class: "secondary", "data-action": "remove-item", "data-item": item.item_id, "aria-label": `Remove ${what}`, "aria-disabled": busy(`item-${item.item_id}`) }, "Remove"))
            : h("div", { class: "muted" }, `${item.quantity} × ${money(item.unit_price_minor)}`),
          slot(`item-${item.item_id}`));
      })),
    cart.items.length ? h("table", { class: "totals", id: "shop-totals" }, h("caption", { class: "visually-hidden" }, "Totals"), h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "Subtotal"), h("td", {}, money(cart.subtotal_minor))),
      h("tr", {}, h("th", { scope: "row" }, method === "pickup" ? "Pickup" : "Delivery"), h("td", { id: "shop-fee" }, cart.delivery_fee_minor ? money(cart.delivery_fee_minor) : "Free")),
      h("tr", {}, h("th", { scope: "row" }, "Tax"), h("td", {}, money(cart.tax_minor))),
      h("tr", { class: "total" }, h("th", { scope: "row" }, "Total"), h("td", { id: "shop-total" }, money(cart.total_minor))))) : null,
    open && cart.items.length && !method && cart.delivery_fee_minor ? h("p", { class: "muted small" }, "Or pick it up for free: you choose at checkout.") : null,
    open && cart.items.length ? h("p", {}, h("button", { id: "checkout", "data-action": "checkout" }, "Check out")) : null,
    slot("checkout"));
}

function accountNote(state) {
  const next = encodeURIComponent(`/shop/${state.storeId}`);
  return h("section", { class: "card", id: "shop-account", "data-key": "shop-account", "aria-labelledby": "shop-account-title" },
    h("h2", { id: "shop-account-title" }, "Have an account?"),
    h("p", {}, h("a", { href: `/#/signin?next=${next}`, id: "shop-signin" }, "Sign in"), " or ", h("a", { href: `/#/signup?next=${next}`, id: "shop-signup" }, "create one"),
      " and your cart comes with you. Or carry on as a guest: no account is needed."));
}

ACTIONS.step = (button) => {
  const state = shop;
  if (button.dataset.step === "cart") { go(`/shop/${state.storeId}`); return; }
  toStep(state, button.dataset.step);
};
ACTIONS.checkout = () => go(`/checkout/${shop.cartId}`);
ACTIONS["to-cart"] = () => {
  const title = document.getElementById("shop-cart-title");
  if (title) { title.scrollIntoView({ block: "start" }); title.focus({ preventScroll: true }); }
};

function toStep(state, step) {
  if (shop !== state) return;
  state.step = step;
  state.payment = null;
  render();
  focusFirst("#step-title");
}

function addressStep(state) {
  const saved = state.cart.address || {};
  const field = (name, label, autocomplete, required = true) => h("div", { "data-key": `ship-${name}` },
    h("label", { for: `ship-${name}` }, label),
    h("input", { id: `ship-${name}`, name, autocomplete, required, value: saved[name] || "", "data-own": true, class: "wide", "aria-describedby": "msg-address" }));
  return h("form", { class: "card", id: "address-step", "data-key": "address-step", "data-submit": "ship-address", novalidate: true, "aria-labelledby": "step-title" },
    h("h2", { id: "step-title" }, "Your address"),
    h("p", { class: "muted" }, "Where the order goes, or whose it is if you pick it up."),
    field("line1", "Address", "address-line1"), field("line2", "Address line 2 (optional)", "address-line2", false),
    field("city", "City", "address-level2"), field("postal_code", "Postal code", "postal-code"), field("country", "Country (2 letters)", "country"),
    h("div", { class: "row" },
      h("button", { type: "submit", id: "to-delivery", "aria-disabled": busy("address") }, "Continue to delivery"),
      h("button", { type: "button", class: "secondary", "data-action": "step", "data-step": "cart" }, "Back to the cart")),
    slot("address"));
}

SUBMITS["ship-address"] = (form) => {
  const state = shop;
  const data = Object.fromEntries([...new FormData(form).entries()].map(([name, value]) => [name, String(value).trim()]));
  const missing = ["line1", "city", "postal_code", "country"].filter((name) => !data[name]);
  if (missing.length) {
    say("address", `Fill in the ${names(missing.map((name) => ADDRESS_WORDS[name]))}.`);
    document.getElementById(`ship-${missing[0]}`).focus();
    return;
  }
  if (!data.line2) delete data.line2;
  act("address", async () => {
    await changeCart(state, "PUT", "/address", data);
    toStep(state, "delivery");
  }, { shop: true });
};

function deliveryStep(state, money) {
  const cart = state.cart;
  const fee = cart.delivery_method !== "pickup" && cart.items.length ? cart.delivery_fee_minor : state.store ? state.store.delivery_fee_minor : 0;
  const chosen = cart.delivery_method || "delivery";
  const choice = (value, text, more) => h("label", { class: "choice", for: `method-${value}`, "data-key": `method-${value}` },
    h("input", { type: "radio", id: `method-${value}`, name: "method", value, checked: chosen === value, "data-own": true }),
    h("span", {}, h("strong", {}, text), h("br"), h("span", { class: "muted" }, more)));
  return h("form", { class: "card", id: "delivery-step", "data-key": "delivery-step", "data-submit": "ship-method", novalidate: true, "aria-labelledby": "step-title" },
    h("h2", { id: "step-title" }, "Delivery or pickup?"),
    h("fieldset", {}, h("legend", {}, "How you get your order"),
      choice("delivery", `Delivery: ${fee ? money(fee) : "free"}`, `To ${addressLine(cart.address)}`),
      choice("pickup", "Pickup: free", fee ? `At the store, ${money(fee)} less than delivery` : "At the store")),
    h("div", { class: "row" },
      h("button", { type: "submit", id: "to-payment", "aria-disabled": busy("delivery") }, "Continue to payment"),
      h("button", { type: "button", class: "secondary", "data-action": "step", "data-step": "address" }, "Back to the address")),
    slot("delivery"));
}

SUBMITS["ship-method"] = (form) => {
  const state = shop;
  const picked = form.querySelector("input[name=method]:checked");
  if (!picked) { say("delivery", "Choose delivery or pickup."); return; }
  act("delivery", async () => {
    await changeCart(state, "PUT", "/delivery", { method: picked.value });
    toStep(state, "payment");
  }, { shop: true });
};

function paymentStep(state, money) {
  const { cart, order, payment } = state;
  if (order && !["awaiting_payment", "payment_failed"].includes(order.status)) {
    return h("section", { class: "card", id: "payment-step", "data-key": "paid-step", "aria-labelledby": "step-title" },
      h("h2", { id: "step-title" }, "Paid"),
      h("p", {}, `This cart is order ${order.number}, ${orderWord(order.status)}.`),
      h("p", {}, h("a", { href: `/#/orders/${order.id}`, id: "see-order" }, "See the order"), " · ", h("a", { href: `/#/shop/${state.storeId}` }, "Shop again")));
  }
  const open = cart.status === "open";
  return h("section", { class: "card", id: "payment-step", "data-key": "payment-step", "aria-labelledby": "step-title" },
    h("h2", { id: "step-title" }, `Pay ${money(cart.total_minor)}`),
    h("p", {}, cart.delivery_method === "pickup" ? "Pickup at the store." : `Delivery to ${addressLine(cart.address)}.`, " ",
      open ? h("button", { class: "link", "data-action": "step", "data-step": "delivery", "aria-label": "Change delivery or pickup" }, "Change") : null),
    open ? null : h("p", { class: "muted", id: "order-kept" }, `Order ${order ? order.number : ""}: its items are kept for you while you pay.`),
    h("div", { class: "row" },
      h("button", { id: "pay-here", "data-action": "pay-here", "aria-disabled": busy("pay-card") }, state.declined ? "Try another card" : "Pay by card here"),
      h("button", { id: "pay-stripe", class: "secondary", "data-action": "pay-stripe", "aria-disabled": busy("pay-stripe") }, "Pay on Stripe's page")),
    slot("pay-stripe"),
    payment ? h("form", { id: "card-form", "data-key": `card-${payment.id}`, "data-submit": "shop-card" },
      h("p", { class: "label", id: "card-label" }, "Card"),
      h("div", { id: "card-element", "data-key": `card-el-${payment.id}`, "data-foreign": true, role: "group", "aria-labelledby": "card-label" }),
      payment.confirm_on_server ? h("p", { class: "muted small" }, "Test mode: card 4242 4242 4242 4242 pays, 4000 0000 0000 0341 is declined; the year takes two digits.") : null,
      h("p", {}, h("button", { type: "submit", id: "pay-card", "aria-disabled": busy("pay-card") }, `Pay ${money(cart.total_minor)}`))) : null,
    slot("pay-card"));
}

// Check out (again): the order is made the first time, and each time after that pays it
// again. After a declined card the next attempt is a new intent, once the server has heard
// the last one failed (the same intent again means it hasn't yet).
async function payAttempt(state, mode) {
  const body = { mode, cancel_url: `${window.location.origin}/#/checkout/${state.cartId}` };
  let started;
  for (let tries = 0; ; tries += 1) {
    try {
      started = await api("POST", `/api/v1/carts/${state.cartId}/checkout`, body);
    } catch (error) {
      if (error.code === "order_not_payable" && state.cart.order_id) { go(`/orders/${state.cart.order_id}`); return null; }
      if (error.code === "out_of_stock") loadShopCatalog(state);
      throw error;
    }
    if (mode !== "payment_intent" || !state.declined || started.payment_intent_id !== state.declined || tries >= 20) break;
    await new Promise((resolve) => { setTimeout(resolve, 300); });
  }
  state.order = { id: started.order_id, number: started.order_number, status: "awaiting_payment" };
  state.cart = await api("GET", `/api/v1/carts/${state.cartId}`).catch(() => state.cart);
  return started;
}

ACTIONS["pay-here"] = () => {
  const state = shop;
  act("pay-card", async () => {
    state.payment = null; // a new attempt gets a new card form: a declined one belonged to the old intent
    render();
    const started = await payAttempt(state, "payment_intent");
    if (!started || shop !== state) return;
    await loadScript(started.stripe_js_url || STRIPE_JS);
    const stripe = window.Stripe(started.publishable_key);
    const card = stripe.elements().create("card");
    state.payment = { ...started, id: ++paymentSerial, stripe, card };
    render();
    const mount = document.getElementById("card-element");
    card.mount(mount);
    const first = mount.querySelector("input");
    if (first) first.focus();
  }, { shop: true });
};

SUBMITS["shop-card"] = () => {
  const state = shop;
  const payment = state && state.payment;
  if (!payment) return;
  act("pay-card", async () => {
    try {
      await sendCard(state, payment, `/api/v1/carts/${state.cartId}/checkout/confirm`);
    } catch (error) {
      if (error.code === "card_declined" && shop === state) { state.payment = null; state.declined = payment.payment_intent_id; }
      throw error;
    }
    go(`/orders/${payment.order_id}`); // where it becomes placed, live
  }, { shop: true });
};

ACTIONS["pay-stripe"] = () => {
  const state = shop;
  act("pay-stripe", async () => {
    const started = await payAttempt(state, "checkout_session");
    if (!started) return;
    announce("Going to Stripe's page to pay…");
    window.location.assign(started.checkout_url); // it comes back to the order page
  }, { shop: true });
};

// ---------------------------------------------------------------- orders, in words

// Each status as the people waiting on it say it (its first words complete "The order is …"),
// what it means for them, and its tone.
const ORDER_STATUS = {
  awaiting_payment: ["waiting for payment", "It's placed once the payment goes through.", "warn"],
  payment_failed: ["not paid", "The payment didn't go through; it can be tried again.", "bad"],
  placed: ["placed", "The store has it, and hasn't accepted it yet.", "warn"],
  accepted: ["accepted", "The store has accepted it and starts on it soon.", "info"],
  preparing: ["being prepared", "The store is preparing it now.", "info"],
  out_for_delivery: ["out for delivery", "It's on its way to the address below.", "info"],
  shipped: ["shipped", "It's on its way: follow it with the tracking below.", "info"],
  delivered: ["delivered", "It has arrived. Enjoy!", "ok"],
  rejected: ["rejected", "The store couldn't take it. Online payments are refunded in full.", "bad"],
  cancelled: ["cancelled", "Online payments are refunded in full.", "bad"],
};
const orderWord = (status) => (ORDER_STATUS[status] || [String(status).replaceAll("_", " ")])[0];
const BY_ROLE = { host: "by the host", buyer: "by the buyer", staff: "by the store", admin: "by TeamCart", system: "automatically" };
const PAID = {
  none: "not paid yet", pending: "being paid", failed: "declined",
  cod_committed: "to pay on delivery", paid_online: "paid", refunded: "refunded in full",
  disputed: "disputed with the bank", won: "paid (dispute won)", lost: "dispute lost",
};
// The store's moves from each status (API.md § Orders), and what their buttons say.
const MOVES = { placed: ["accepted", "rejected"], accepted: ["preparing"], preparing: ["out_for_delivery", "shipped"], out_for_delivery: ["delivered"], shipped: ["delivered"] };
const MOVE_LABEL = { accepted: "Accept", rejected: "Reject…", preparing: "Start preparing", out_for_delivery: "Out for delivery", shipped: "Shipped…", delivered: "Delivered", cancelled: "Cancel…" };
const STAFF_CANCELS = new Set(["placed", "accepted", "preparing"]);
const WITH_FORM = new Set(["shipped", "rejected", "cancelled"]); // these ask something first
const REFUNDABLE = new Set(["paid_online", "won"]);
const CONN = { connecting: ["Connecting…", "warn"], live: ["Live", "ok"], reconnecting: ["Reconnecting…", "warn"], offline: ["Offline — retrying", "bad"] };

const when = (at) => new Date(at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
const addressLine = (a = {}) => [a.line1, a.line2, `${a.postal_code || ""} ${a.city || ""}`.trim(), a.country].filter(Boolean).join(", ");
const linesLine = (order) => order.lines.map((l) => `${l.quantity} × ${l.name}${l.options.length ? ` (${l.options.join(", ")})` : ""}`).join(", ");

// What an order's update means, for screen readers: "The order is out for delivery."
function orderNews(before, order, event) {
  const money = (minor) => formatMoney(minor, order.currency);
  if (event === "order_refunded" || event === "order_payment_updated") {
    const said = [];
    for (const p of order.payments) {
      const was = before && before.payments.find((q) => q.user_id === p.user_id && q.method === p.method);
      const who = p.user_id === session.userId ? "You" : p.display_name;
      if (was && p.refunded_minor > was.refunded_minor) said.push(`${who} ${who === "You" ? "were" : "was"} refunded ${money(p.refunded_minor - was.refunded_minor)}.`);
      else if (was && p.status !== was.status) said.push(`${who === "You" ? "Your" : `${who}'s`} payment is now ${PAID[p.status] || p.status}.`);
    }
    if (said.length) return said.join(" ");
  }
  if (!before || before.status !== order.status) {
    const tracking = order.status === "shipped" && order.tracking ? ` ${order.tracking.carrier}, tracking number ${order.tracking.tracking_number}.` : "";
    return `The order is ${orderWord(order.status)}.${tracking}`;
  }
  return null; // nothing a person would notice changed
}

// An order the page was answered or sent: every screen showing it takes it if it is newer.
function applyOrder(order) {
  if (orderLive && orderLive.order && orderLive.orderId === order.id && order.version > orderLive.version) {
    orderLive.order = order;
    orderLive.version = order.version;
  }
  if (storeLive && storeLive.items) {
    storeLive.items = storeLive.items.map((o) => (o.id === order.id && order.version >= o.version ? order : o));
  }
  render();
}

// ---------------------------------------------------------------- my orders

async function showOrders() {
  ui.screen = "orders";
  ui.orders = null;
  render();
  try {
    const page = await api("GET", "/api/v1/orders");
    if (ui.screen === "orders") { ui.orders = page.items; render(); }
  } catch (error) {
    if (error.code === "unauthorized") { route(); return; }
    ui.orders = [];
    say("orders", words(error));
  }
}

function ordersScreen() {
  const orders = ui.orders;
  return h("section", { class: "card", id: "orders", "data-key": "orders" }, h("h1", {}, "My orders"),
    orders === null ? h("p", { class: "muted" }, "Loading…")
      : orders.length === 0 ? h("p", { class: "muted" }, "No orders yet.")
        : h("ul", { class: "plain" }, orders.map((order) => h("li", { "data-key": `o-${order.id}` },
          h("div", { class: "spread" },
            h("a", { href: `/#/orders/${order.id}` }, `${order.store_name ? `${order.store_name} · ` : ""}${order.number}`),
            h("span", {}, `You paid ${formatMoney(order.my_amount_minor || 0, order.currency)}`)),
          h("div", { class: "muted" }, h("span", { class: "cap" }, orderWord(order.status)),
            ` · ${when(order.created_at)} · ${order.kind === "single" ? "total" : "group total"} ${formatMoney(order.total_minor, order.currency)}`,
            order.my_refunded_minor ? ` · ${formatMoney(order.my_refunded_minor, order.currency)} refunded to you` : "")))),
    slot("orders"));
}

// ---------------------------------------------------------------- one order, live

let orderLive = null; // the open order: { orderId, order, version, names, conn, attempts, socket, ... }

function closeOrder() {
  if (!orderLive) return;
  orderLive.closing = true;
  if (orderLive.socket) orderLive.socket.close();
  clearInterval(orderLive.pinger);
  clearTimeout(orderLive.retry);
  orderLive = null;
}

async function showOrder(orderId) {
  const state = { orderId, order: null, version: 0, names: new Map(), conn: "connecting", attempts: 0 };
  orderLive = state;
  ui.screen = "order";
  render();
  try {
    state.order = await api("GET", `/api/v1/orders/${orderId}`);
  } catch (error) {
    if (orderLive !== state) return;
    if (error.code === "unauthorized") { route(); return; }
    closeOrder();
    ui.notice = { title: error.status === 404 ? "No such order" : "Can't show this order", text: words(error) };
    ui.screen = "message";
    render();
    return;
  }
  if (orderLive !== state) return;
  state.version = state.order.version;
  render();
  connectOrder(state);
  // Members with nothing to pay are on no payment: their names come from the cart.
  const named = new Set(state.order.payments.map((p) => p.user_id));
  if (state.order.teamcart_id && state.order.lines.some((l) => !named.has(l.user_id))) {
    const cart = await api("GET", `/api/v1/teamcarts/${state.order.teamcart_id}`).catch(() => null);
    if (cart && orderLive === state) { for (const m of cart.members) state.names.set(m.user_id, m.display_name); render(); }
  }
}

function connectOrder(state) {
  if (orderLive !== state || state.closing) return;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/ws/orders/${state.orderId}?token=${encodeURIComponent(session.token)}`);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.pinger = setInterval(() => socket.readyState === 1 && socket.send(JSON.stringify({ type: "ping" })), 20000);
  });
  socket.addEventListener("message", (event) => receiveOrder(state, JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    clearInterval(state.pinger);
    if (orderLive !== state || state.closing || state.socket !== socket) return;
    if (event.code === 4401) { session.forget(); route(); return; }
    if (event.code === 4403 || event.code === 4404) {
      closeOrder();
      ui.notice = event.code === 4404 ? { title: "This order is gone", text: "It no longer exists." } : { title: "Can't show this order", text: words({ code: "not_a_participant", body: {} }) };
      ui.screen = "message";
      render();
      return;
    }
    // Reconnect with backoff (at most 5 s apart); the snapshot on reconnect catches up.
    state.attempts += 1;
    state.conn = state.attempts > 3 || !navigator.onLine ? "offline" : "reconnecting";
    render();
    state.retry = setTimeout(() => connectOrder(state), Math.min(5000, 250 * 2 ** state.attempts));
  });
}

function receiveOrder(state, message) {
  if (orderLive !== state) return;
  const before = state.order;
  if (message.type === "snapshot") {
    state.order = message.order;
    state.version = message.version;
    const wasDown = state.conn !== "live" && state.conn !== "connecting";
    state.conn = "live";
    state.attempts = 0;
    if (before.status !== message.order.status) announce(orderNews(before, message.order));
    else if (wasDown) announce("Back online. The order is up to date.");
  } else if (message.type === "update") {
    if (message.version <= state.version) return; // already seen (or answered to our own move)
    if (message.version !== state.version + 1) { state.socket.send(JSON.stringify({ type: "resync" })); return; }
    state.order = message.order;
    state.version = message.version;
    const news = orderNews(before, message.order, message.event);
    if (news) announce(news);
  } else {
    return;
  }
  render();
}

function reconnectOrderNow() {
  const state = orderLive;
  if (!state || state.conn === "live" || !state.socket || state.socket.readyState === 0) return;
  clearTimeout(state.retry);
  connectOrder(state);
}
window.addEventListener("online", reconnectOrderNow);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") reconnectOrderNow(); });

function orderScreen() {
  const state = orderLive;
  if (!state || !state.order) return loading();
  const order = state.order;
  const money = (minor) => formatMoney(minor, order.currency);
  const nameOf = (userId) => {
    if (userId === session.userId) return "You";
    const payment = order.payments.find((p) => p.user_id === userId);
    return (payment && payment.display_name) || state.names.get(userId) || "A member";
  };
  const [word, meaning, tone] = ORDER_STATUS[order.status] || [orderWord(order.status), "", ""];
  const conn = CONN[state.conn];
  const byPerson = new Map();
  for (const line of order.lines) {
    if (!byPerson.has(line.user_id)) byPerson.set(line.user_id, []);
    byPerson.get(line.user_id).push(line);
  }
  const head = h("section", { class: "card head order-head", id: "order-head", "data-key": "order-head", "aria-labelledby": "order-title" },
    h("div", { class: "spread" }, h("h1", { id: "order-title" }, `Order ${order.number}`), h("span", { class: "muted", id: "order-store" }, order.store_name || "")),
    h("p", { class: "status-line" }, h("span", { class: "visually-hidden" }, "Status: "),
      h("strong", { class: `status-word cap ${tone}`, id: "order-status", "data-status": order.status }, word)),
    h("p", { id: "order-meaning" }, meaning),
    h("p", { class: `conn ${conn[1]}`, id: "order-conn", "data-conn": state.conn, role: "status" }, h("span", { class: "dot", "aria-hidden": "true" }), conn[0]),
    slot("order"));
  const tracking = order.tracking ? h("section", { class: "card", id: "tracking", "data-key": "tracking", "aria-labelledby": "tracking-title" },
    h("h2", { id: "tracking-title" }, "Tracking"),
    h("dl", { class: "facts" },
      h("dt", {}, "Carrier"), h("dd", { id: "tracking-carrier" }, order.tracking.carrier),
      h("dt", {}, "Tracking number"), h("dd", { id: "tracking-number", class: "mono" }, order.tracking.tracking_number)),
    order.tracking.url ? h("p", {}, h("a", { href: order.tracking.url, id: "tracking-link", target: "_blank", rel: "noopener noreferrer" }, `Follow the parcel on ${order.tracking.carrier}'s site`)) : null) : null;
  const history = h("section", { class: "card", id: "history-card", "data-key": "history", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "What happened"),
    h("ol", { class: "timeline", id: "history" }, order.history.map((entry, i) => h("li", { "data-key": `h-${i}`, "data-status": entry.status },
      h("strong", { class: "cap" }, orderWord(entry.status)), " ",
      h("span", { class: "muted" }, h("time", { datetime: entry.at }, when(entry.at)), ` · ${BY_ROLE[entry.by_role] || entry.by_role}`),
      entry.reason ? h("div", { class: "reason" }, `“${entry.reason}”`) : null))));
  const what = h("section", { class: "card", id: "order-lines", "data-key": "order-lines", "aria-labelledby": "lines-title" },
    h("h2", { id: "lines-title" }, order.kind === "single" ? "What was ordered" : "What everyone ordered"),
    h("ul", { class: "plain" }, [...byPerson.entries()].map(([userId, lines]) => h("li", { "data-key": `ol-${userId}` },
      h("strong", {}, nameOf(userId)),
      h("ul", { class: "items" }, lines.map((line, i) => h("li", { class: "spread", "data-key": `l-${i}` },
        h("span", {}, `${line.quantity} × ${line.name}${line.options.length ? ` (${line.options.join(", ")})` : ""}`),
        h("span", {}, money(line.line_total_minor)))))))),
    h("table", { class: "totals" }, h("caption", { class: "visually-hidden" }, "Totals"), h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "Subtotal"), h("td", {}, money(order.subtotal_minor))),
      h("tr", {}, h("th", { scope: "row" }, "Delivery"), h("td", {}, money(order.delivery_fee_minor))),
      h("tr", {}, h("th", { scope: "row" }, "Tax"), h("td", {}, money(order.tax_minor))),
      order.tip_minor ? h("tr", {}, h("th", { scope: "row" }, "Tip"), h("td", {}, money(order.tip_minor))) : null,
      order.discount_minor ? h("tr", {}, h("th", { scope: "row" }, `Discount${order.coupon_code ? ` (${order.coupon_code})` : ""}`), h("td", {}, `−${money(order.discount_minor)}`)) : null,
      h("tr", { class: "total" }, h("th", { scope: "row" }, "Total"), h("td", {}, money(order.total_minor))))));
  const paid = h("section", { class: "card", id: "paid", "data-key": "paid", "aria-labelledby": "paid-title" },
    h("h2", { id: "paid-title" }, order.kind === "single" ? "Payment" : "Who paid what"),
    h("ul", { class: "plain", id: "payments" }, order.payments.map((p) => {
      const own = p.user_id === session.userId;
      return h("li", { class: own ? "mine" : null, "data-key": `pay-${p.user_id}-${p.method}`, "data-user-id": p.user_id, "data-status": p.status },
        h("div", { class: "spread" },
          h("span", {}, h("strong", {}, own ? "You" : p.display_name || nameOf(p.user_id)), ` · ${p.method === "cod" ? "Cash on delivery" : "Online"}`),
          h("span", {}, money(p.amount_minor))),
        h("div", { class: "muted" }, h("span", { class: "cap" }, PAID[p.status] || p.status),
          p.refunded_minor && p.status !== "refunded" ? h("span", { class: "refunded" }, ` · ${money(p.refunded_minor)} refunded`) : null,
          p.refunded_minor && p.status === "refunded" ? h("span", { class: "refunded" }, ` · ${money(p.refunded_minor)} back`) : null));
    })));
  const isHost = order.host_user_id === session.userId;
  const delivery = h("section", { class: "card", id: "delivery", "data-key": "delivery", "aria-labelledby": "delivery-title" },
    h("h2", { id: "delivery-title" }, "Delivery"),
    h("p", {}, addressLine(order.delivery_address)),
    isHost && order.status === "placed" && !session.staffOf(order.store_id) ? hostCancel(order) : null,
    h("p", {}, h("a", { href: "/#/orders" }, "All my orders")));
  const staff = session.staffOf(order.store_id) ? h("section", { class: "card", id: "order-staff", "data-key": "order-staff", "aria-labelledby": "order-staff-title" },
    h("h2", { id: "order-staff-title" }, "For the store"),
    staffControls(order),
    h("p", {}, h("a", { href: `/#/store/${order.store_id}` }, "All the store's orders"))) : null;
  return h("div", { class: "layout", id: "order", "data-key": `order-${order.id}` },
    h("div", { class: "col col-side", "data-key": "order-side" }, head, staff, tracking, history),
    h("div", { class: "col col-rest", "data-key": "order-rest" }, what, paid, delivery));
}

function hostCancel(order) {
  return h("form", { class: "inline-form", "data-submit": "host-cancel", "data-order": order.id, "data-key": "host-cancel", novalidate: true },
    h("label", { for: "host-cancel-reason" }, `Cancel the order: why? (optional${order.kind === "single" ? "" : ", the group sees it"})`),
    h("input", { id: "host-cancel-reason", class: "wide", maxlength: "500", "data-own": true, autocomplete: "off", "aria-describedby": "msg-host-cancel" }),
    h("p", {}, h("button", { type: "submit", class: "danger", id: "host-cancel", "aria-disabled": busy("host-cancel") }, "Cancel the order")),
    h("p", { class: "muted small" }, "While the store hasn't accepted it yet. Online payments are refunded in full."),
    slot("host-cancel"));
}

SUBMITS["host-cancel"] = (form) => {
  if (!window.confirm("Cancel this order for everyone? Online payments are refunded in full.")) return;
  const reason = form.querySelector("input").value.trim();
  act("host-cancel", async () => applyOrder(await api("POST", `/api/v1/orders/${form.dataset.order}/cancel`, { reason: reason || null })));
};

// ---------------------------------------------------------------- the store's orders, for its staff

let storeLive = null; // { storeId, store, filter, items, nextCursor, more, conn, denied, serial, poller, pay }
const STORE_POLL_MS = 4000;
const FILTERS = [
  ["all", "All", ""], ["new", "New", "placed"], ["progress", "In progress", "accepted,preparing"],
  ["way", "On the way", "out_for_delivery,shipped"], ["done", "Done", "delivered,rejected,cancelled"],
];
const statusesOf = (filter) => (FILTERS.find((f) => f[0] === filter) || FILTERS[0])[2];
const fits = (filter, status) => !statusesOf(filter) || statusesOf(filter).split(",").includes(status);
const newestFirst = (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : -1);

function adoptToken(token) {
  const claims = claimsOf(token);
  if (!claims) return false;
  session.save({ token, user_id: claims.sub }, (claims.extras && claims.extras.name) || "Staff");
  return true;
}

function closeStore() {
  if (!storeLive) return;
  clearInterval(storeLive.poller);
  clearInterval(storeLive.pay.poller);
  storeLive = null;
}

// `back`: Stripe's onboarding sent the browser back here ("return": done there, or "refresh":
// the link had expired or was used).
async function showStore(storeId, refused = null, back = null) {
  const state = { storeId, store: null, filter: "all", items: null, nextCursor: null, more: false, conn: "live", denied: !session.token, serial: 0,
    pay: { view: null, failed: null, back, pollUntil: 0, poller: null, money: null, moneyNext: null, moneyMore: false, moneyAt: 0, numbers: new Map() } };
  storeLive = state;
  ui.screen = "store";
  render();
  if (refused) say("staff-signin", refused);
  if (state.denied) { focusFirst("#staff-token"); return; }
  api("GET", `/api/v1/stores/${storeId}`).then((store) => { if (storeLive === state) { state.store = store; render(); } }).catch(() => {});
  if (back === "return") watchOnboarding(state);
  if (back === "refresh") say("connect", "That setup link had expired or was used already. Press “Continue setup” for a new one.", "info", () => storeLive === state && !(state.pay.view && state.pay.view.status === "enabled"));
  readOnboarding(state).then(() => { if (back && storeLive === state && state.pay.view) focusFirst("#paid-title"); });
  readMoney(state);
  await refreshStore(state);
  state.poller = setInterval(() => { if (document.visibilityState === "visible") refreshStore(state); }, STORE_POLL_MS);
}

// Coming back to the page (from Stripe's onboarding in another tab, say) reads everything again.
function storeAgain() {
  const state = storeLive;
  if (!state || state.denied) return;
  refreshStore(state);
  if (!state.pay.view || state.pay.view.status !== "enabled") readOnboarding(state);
  if (Date.now() - state.pay.moneyAt > 30000) readMoney(state);
}
window.addEventListener("focus", storeAgain);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") storeAgain(); });
window.addEventListener("online", storeAgain);
// Back from Stripe's page with the browser's Back button, the page may come out of the
// back/forward cache as it was left ("Going to Stripe…"): it starts afresh.
window.addEventListener("pageshow", (event) => { if (event.persisted && storeLive) route(); });

// The first page again: new orders come in, known ones take their newer version, and ones
// that no longer fit the filter go (unless someone is working on them).
async function refreshStore(state) {
  const serial = ++state.serial;
  const filter = state.filter;
  const statuses = statusesOf(filter);
  let page;
  try {
    page = await api("GET", `/api/v1/stores/${state.storeId}/orders${statuses ? `?status=${statuses}` : ""}`);
  } catch (error) {
    if (storeLive !== state || serial !== state.serial) return;
    if (error.status === 401 || error.status === 403) {
      state.denied = true;
      clearInterval(state.poller);
      render();
      say("staff-signin", error.status === 401 ? words(error)
        : `You're signed in as ${session.name || "someone"}, who isn't on this store's staff. Sign in with the store's staff token (this browser then stops being ${session.name || "theirs"}).`);
      focusFirst("#staff-token");
      return;
    }
    if (error.code === "offline" || error.status >= 500) { state.conn = "offline"; render(); return; }
    say("store", words(error));
    return;
  }
  if (storeLive !== state || serial !== state.serial || state.filter !== filter) return;
  staffStores.add(state.storeId);
  state.conn = "live";
  if (state.items === null) {
    state.items = page.items;
    state.nextCursor = page.next_cursor;
    render();
    return;
  }
  const fresh = new Map(page.items.map((o) => [o.id, o]));
  const known = new Set(state.items.map((o) => o.id));
  const arrived = page.items.filter((o) => !known.has(o.id));
  const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("[data-order-id]") : null;
  const kept = state.items.map((o) => { const f = fresh.get(o.id); return f && f.version >= o.version ? f : o; })
    .filter((o) => fits(filter, o.status) || ui.staffForms.has(o.id) || (focused && focused.dataset.orderId === o.id));
  state.items = [...arrived, ...kept].sort(newestFirst);
  if (!state.more) state.nextCursor = page.next_cursor;
  const fresher = arrived.filter((o) => o.status === "placed");
  if (fresher.length) announce(fresher.length === 1 ? `New order ${fresher[0].number}.` : `${fresher.length} new orders.`);
  render();
}

ACTIONS["store-filter"] = (button) => {
  const state = storeLive;
  if (!state || state.filter === button.dataset.filter) return;
  state.filter = button.dataset.filter;
  state.items = null;
  state.nextCursor = null;
  state.more = false;
  ui.staffForms.clear();
  unsay("store-more");
  render();
  refreshStore(state);
};

ACTIONS["store-more"] = () => act("store-more", async () => {
  const state = storeLive;
  const statuses = statusesOf(state.filter);
  const filter = state.filter;
  const query = new URLSearchParams({ cursor: state.nextCursor });
  if (statuses) query.set("status", statuses);
  const page = await api("GET", `/api/v1/stores/${state.storeId}/orders?${query}`);
  if (storeLive !== state || state.filter !== filter) return;
  const known = new Set(state.items.map((o) => o.id));
  state.items = [...state.items, ...page.items.filter((o) => !known.has(o.id))];
  state.nextCursor = page.next_cursor;
  state.more = true;
});

function storeScreen() {
  const state = storeLive;
  if (!state) return loading();
  if (state.denied) return staffSignIn();
  const name = state.store ? state.store.name : (state.items && state.items[0] && state.items[0].store_name) || "The store";
  const conn = state.conn === "live" ? ["Live: new orders show up by themselves", "ok"] : CONN.offline;
  const [, filterLabel] = FILTERS.find((f) => f[0] === state.filter);
  const head = h("section", { class: "card head", id: "store-head", "data-key": "store-head", "aria-labelledby": "store-title" },
    h("h1", { id: "store-title" }, `${name}: orders`),
    h("p", { class: `conn ${conn[1]}`, id: "store-conn", "data-conn": state.conn, role: "status" }, h("span", { class: "dot", "aria-hidden": "true" }), conn[0]),
    h("div", { class: "chips", role: "group", "aria-label": "Show orders", id: "store-filters" },
      FILTERS.map(([key, label]) => h("button", { class: "chip", "data-key": `f-${key}`, "data-action": "store-filter", "data-filter": key, "aria-pressed": String(state.filter === key) }, label))),
    paidHint(state.pay.view),
    slot("store"));
  const list = state.items === null ? h("p", { class: "card muted", "data-key": "store-loading" }, "Loading the orders…")
    : state.items.length === 0 ? h("p", { class: "card muted", "data-key": "store-empty", id: "store-empty" },
      state.filter === "all" ? "No orders yet. They show up here by themselves." : `No orders in “${filterLabel}” now.`)
      : h("ul", { class: "plain orders-list", id: "store-orders", "data-key": "store-orders", "aria-label": `Orders: ${filterLabel.toLowerCase()}` },
        state.items.map(storeOrder));
  const more = state.nextCursor ? h("div", { "data-key": "store-more" },
    h("p", {}, h("button", { class: "secondary", id: "store-more", "data-action": "store-more", "aria-disabled": busy("store-more") }, "Load more", h("span", { class: "visually-hidden" }, " orders"))), slot("store-more")) : null;
  return [head, list, more, gettingPaid(state)];
}

// Until the store can be paid, its head says so, with a way to the section that fixes it.
function paidHint(view) {
  if (!view || view.status === "enabled") return null;
  return h("p", { class: "small warn-text", id: "paid-hint", "data-key": "paid-hint" },
    view.status === "not_started" ? "This store isn't set up to be paid out yet. " : "Setting up payouts isn't finished. ",
    h("button", { class: "link", "data-action": "to-paid" }, "Getting paid"));
}

function storeOrder(order) {
  const money = (minor) => formatMoney(minor, order.currency);
  const count = order.lines.reduce((n, l) => n + l.quantity, 0);
  const [word, , tone] = ORDER_STATUS[order.status] || [orderWord(order.status), "", ""];
  const people = new Set(order.lines.map((l) => l.user_id)).size;
  return h("li", { class: "store-order", id: `so-${order.id}`, "data-key": `so-${order.id}`, "data-order-id": order.id, "data-number": order.number, "data-status": order.status },
    h("div", { class: "spread" },
      h("h2", { class: "h3", id: `so-title-${order.id}` }, h("a", { href: `/#/orders/${order.id}` }, order.number)),
      h("span", { class: `badge cap ${tone} order-state`, "data-status": order.status }, word)),
    h("p", { class: "muted" }, `${when(order.created_at)} · ${money(order.total_minor)} · ${count} ${count === 1 ? "item" : "items"}${order.kind === "group" ? ` · ${people} ${people === 1 ? "person" : "people"}` : ""}`),
    h("p", { class: "order-lines" }, linesLine(order)),
    h("p", { class: "muted small" }, `To ${addressLine(order.delivery_address)}`),
    order.tracking ? h("p", { class: "small" }, `${order.tracking.carrier} · `, h("span", { class: "mono" }, order.tracking.tracking_number)) : null,
    staffControls(order));
}

function staffSignIn() {
  return h("section", { class: "card", id: "staff-signin", "data-key": "staff-signin", "aria-labelledby": "staff-title" },
    h("h1", { id: "staff-title" }, "Store staff: sign in"),
    h("p", {}, "Open the staff link your manager sent you, or paste the staff token here."),
    h("p", { class: "muted small" }, "A manager makes one with: teamcart token --staff <store id>"),
    h("form", { "data-submit": "staff-sign-in", novalidate: true },
      h("label", { for: "staff-token" }, "Staff token"),
      h("div", { class: "row nowrap" },
        h("input", { id: "staff-token", type: "password", class: "wide", autocomplete: "off", spellcheck: "false", "data-own": true, "aria-describedby": "msg-staff-signin" }),
        h("button", { type: "submit", "aria-disabled": busy("staff-signin") }, "Sign in")),
      slot("staff-signin")));
}

SUBMITS["staff-sign-in"] = (form) => {
  const token = form.querySelector("#staff-token").value.trim();
  if (!token) { say("staff-signin", "Paste the staff token first."); return; }
  if (!claimsOf(token)) { say("staff-signin", "That isn't a TeamCart token: copy the whole of it, and nothing else."); return; }
  const storeId = storeLive.storeId;
  adoptToken(token);
  ui.home = null;
  if (window.location.hash === `#/store/${storeId}`) route();
  else go(`/store/${storeId}`);
};

// ---------------------------------------------------------------- getting paid: the store's Stripe account and its money (ADR 0018)

const PAY_POLL_MS = 1000;
const PAY_WAIT_MS = 20000; // back from Stripe: how long to ask until its account.updated has come in

async function readOnboarding(state) {
  const pay = state.pay;
  let view;
  try {
    view = await api("GET", `/api/v1/stores/${state.storeId}/connect`);
  } catch (error) {
    if (storeLive !== state) return;
    if (error.status !== 401 && error.status !== 403) { pay.failed = words(error, { staff: true }); render(); } // the orders' read says who may
    return;
  }
  if (storeLive !== state) return;
  const before = pay.view;
  pay.view = view;
  pay.failed = null;
  if (view.status === "enabled" || Date.now() > pay.pollUntil) stopWatching(pay);
  if (before && before.status !== "enabled" && view.status === "enabled") readMoney(state);
  render();
}

// After onboarding: ask every second for a while (Stripe's webhook, not the browser coming
// back, says whether it's done).
function watchOnboarding(state) {
  const pay = state.pay;
  stopWatching(pay);
  pay.pollUntil = Date.now() + PAY_WAIT_MS;
  pay.poller = setInterval(() => {
    if (storeLive !== state) { stopWatching(pay); return; }
    if (Date.now() > pay.pollUntil) { stopWatching(pay); render(); return; }
    readOnboarding(state);
  }, PAY_POLL_MS);
}

function stopWatching(pay) {
  clearInterval(pay.poller);
  pay.poller = null;
}

// The first page of the store's money again (or the next one): transfers in, payouts out.
async function readMoney(state, next = false) {
  const pay = state.pay;
  const query = next && pay.moneyNext ? `?${new URLSearchParams({ cursor: pay.moneyNext })}` : "";
  let page;
  try {
    page = await api("GET", `/api/v1/stores/${state.storeId}/payouts${query}`);
  } catch (error) {
    if (next) throw error;
    return; // the list stays as it was: the orders' read says what's wrong
  }
  if (storeLive !== state) return;
  const keyOfMoney = (item) => `${item.kind}-${item.id}`;
  if (next) {
    const known = new Set(pay.money.map(keyOfMoney));
    pay.money = [...pay.money, ...page.items.filter((item) => !known.has(keyOfMoney(item)))];
    pay.moneyNext = page.next_cursor;
    pay.moneyMore = true;
  } else {
    pay.moneyAt = Date.now();
    if (pay.money === null || !pay.moneyMore) {
      pay.money = page.items;
      pay.moneyNext = page.next_cursor;
    } else {
      const fresh = new Map(page.items.map((item) => [keyOfMoney(item), item]));
      const kept = pay.money.map((item) => fresh.get(keyOfMoney(item)) || item);
      const known = new Set(kept.map(keyOfMoney));
      pay.money = [...page.items.filter((item) => !known.has(keyOfMoney(item))), ...kept];
    }
  }
  nameOrders(state);
  render();
}

// A transfer names its order by id; the page says the order's number (from the orders it has
// on screen, or asked once).
function nameOrders(state) {
  const pay = state.pay;
  for (const item of pay.money) {
    const id = item.order_id;
    if (!id || pay.numbers.has(id) || (state.items && state.items.some((o) => o.id === id))) continue;
    pay.numbers.set(id, null);
    api("GET", `/api/v1/orders/${id}`).then((order) => { if (storeLive === state) { pay.numbers.set(id, order.number); render(); } }).catch(() => {});
  }
}

function orderNumber(state, id) {
  const order = state.items && state.items.find((o) => o.id === id);
  return order ? order.number : state.pay.numbers.get(id) || null;
}

ACTIONS["connect-start"] = () => act("connect", async () => {
  const state = storeLive;
  const link = await api("POST", `/api/v1/stores/${state.storeId}/connect`);
  if (storeLive !== state) return;
  if (!/^https?:\/\//.test(link.onboarding_url)) throw new ApiError(502, { code: "payment_provider_unavailable" });
  say("connect", "Going to Stripe… It brings you back here when you're done.", "info", () => storeLive === state);
  window.location.assign(link.onboarding_url);
}, { staff: true });

ACTIONS["connect-check"] = () => { const state = storeLive; if (state) { watchOnboarding(state); readOnboarding(state); render(); } };
ACTIONS["to-paid"] = () => {
  const title = document.getElementById("paid-title");
  if (title) { title.scrollIntoView({ block: "start" }); title.focus({ preventScroll: true }); }
};
ACTIONS["money-more"] = () => act("money-more", () => readMoney(storeLive, true), { staff: true });

// What Stripe still asks for, in words (its requirement names, deduplicated).
const REQUIREMENT_WORDS = {
  "business_profile.mcc": "what the business sells", "business_profile.url": "the business's website",
  "business_profile.product_description": "a description of what the business sells", business_type: "the kind of business",
  external_account: "a bank account to pay out to", "tos_acceptance.date": "agreeing to Stripe's terms", "tos_acceptance.ip": "agreeing to Stripe's terms",
};
const WHOSE = { representative: "the representative's", individual: "your", company: "the company's", owners: "the owners'", directors: "the directors'", executives: "the executives'" };
function requirementWord(name) {
  if (REQUIREMENT_WORDS[name]) return REQUIREMENT_WORDS[name];
  const parts = String(name).split(".");
  const whose = WHOSE[parts[0]] || (/^person_/.test(parts[0]) ? "a person's" : null);
  const rest = whose ? parts.slice(1) : parts;
  const field = /first_name|last_name/.test(rest.join(".")) ? "name"
    : rest.includes("dob") ? "date of birth"
      : rest.includes("address") ? "address"
        : rest.includes("document") ? "identity document"
          : /id_number|ssn_last_4|tax_id/.test(rest.join(".")) ? "tax or ID number"
            : (rest.filter((p) => p !== "verification").at(-1) || parts.at(-1)).replaceAll("_", " ");
  return whose ? `${whose} ${field}` : field;
}

// Where onboarding stands: [in a word or two, its tone, what it means, the button's words or none].
function onboardingWords(pay) {
  const view = pay.view;
  const due = view ? [...new Set(view.requirements_due.map(requirementWord))] : [];
  if (!view) return pay.failed ? ["Not known", "bad", `couldn't ask how setup stands. ${pay.failed}`, null] : ["Checking", "", "asking how setup stands…", null];
  if (view.status === "not_started") {
    return ["Not started", "warn", "this store can't receive the money from online payments yet. Set up payouts with Stripe: it takes a few minutes, and Stripe then pays the store's money to its bank.", "Set up payouts with Stripe"];
  }
  if (view.status === "enabled") {
    return ["Ready", "ok", `payments and payouts are on. Stripe pays the store's money out to its bank.${due.length ? ` Stripe will need more soon: ${names(due)}.` : ""}`, due.length ? "Continue setup" : null];
  }
  const held = view.status === "restricted"
    ? ` ${view.charges_enabled ? "Payments are on" : "Payments are held"}; ${view.payouts_enabled ? "payouts are on" : "payouts are held"}.` : "";
  if (pay.poller) return ["Waiting for Stripe", "warn", "it's confirming the details you gave…", null];
  if (due.length) return ["Not finished", "warn", `Stripe still needs: ${names(due)}.${held}`, "Continue setup"];
  return ["Waiting for Stripe", "warn", `it's checking the details you gave.${held} This page asks again when you come back to it.`, "Continue setup"];
}

const TRANSFER_WORDS = {
  pending: ["On its way to the store's Stripe account", "warn"], paid: ["In the store's Stripe balance", "ok"],
  partially_reversed: ["Partly taken back for refunds", "warn"], reversed: ["Taken back: refunded in full", "bad"],
};
const PAYOUT_WORDS = {
  paid: ["Paid to the bank", "ok"], pending: ["On its way to the bank", "warn"], in_transit: ["On its way to the bank", "warn"],
  failed: ["Failed: the bank didn't take it", "bad"], canceled: ["Cancelled", "bad"],
};

function gettingPaid(state) {
  const pay = state.pay;
  const view = pay.view;
  const [badge, tone, text, button] = onboardingWords(pay);
  const waited = view && view.status !== "enabled" && pay.back === "return" && !pay.poller;
  const money = pay.money;
  return h("section", { class: "card", id: "getting-paid", "data-key": "getting-paid", "aria-labelledby": "paid-title" },
    h("h2", { id: "paid-title" }, "Getting paid"),
    h("p", { id: "onboarding-state", class: "onboarding", "data-status": view ? view.status : "unknown", "aria-live": "polite" },
      h("strong", { class: tone ? `${tone}-text` : null }, `${badge}:`), " ", text),
    button || waited ? h("div", { class: "row", "data-key": "connect-row" },
      button ? h("button", { id: "connect-start", class: view && view.status === "enabled" ? "secondary" : null, "data-action": "connect-start", "aria-disabled": busy("connect"), "aria-describedby": "onboarding-state msg-connect" }, button) : null,
      waited ? h("button", { class: "link", id: "connect-check", "data-action": "connect-check" }, "Check again") : null) : null,
    slot("connect"),
    h("h3", { id: "money-title" }, "Money"),
    money === null ? h("p", { class: "muted", "data-key": "money-loading" }, "Loading…")
      : money.length === 0 ? h("p", { class: "muted", id: "money-empty", "data-key": "money-empty" },
        view && view.status === "enabled" ? "Nothing yet. Each order paid online sends the store its part (less TeamCart's fee), and Stripe pays it out to the bank."
          : "Nothing yet. Once payouts are set up, the store's part of each order paid online shows here.")
        : h("ul", { class: "plain money", id: "money", "data-key": "money", "aria-labelledby": "money-title" }, money.map((item) => moneyItem(state, item))),
    pay.moneyNext ? h("div", { "data-key": "money-more" },
      h("p", {}, h("button", { class: "secondary", id: "money-more", "data-action": "money-more", "aria-disabled": busy("money-more") }, "Load more", h("span", { class: "visually-hidden" }, " transfers and payouts"))),
      slot("money-more")) : null);
}

function moneyItem(state, item) {
  const currency = String(item.currency).toUpperCase();
  const money = (minor) => formatMoney(minor, currency);
  const transfer = item.kind === "transfer";
  const [word, tone] = (transfer ? TRANSFER_WORDS : PAYOUT_WORDS)[item.status] || [String(item.status).replaceAll("_", " "), ""];
  const number = item.order_id ? orderNumber(state, item.order_id) : null;
  const what = !transfer ? "Payout to the bank"
    : item.order_id ? ["For order ", h("a", { href: `/#/orders/${item.order_id}`, class: "money-order" }, number || "(see the order)")] : "Transfer to the store";
  const more = [];
  if (transfer && item.fee_minor) more.push(`after TeamCart's fee of ${money(item.fee_minor)}`);
  if (transfer && item.reversed_minor) more.push(`${money(item.reversed_minor)} taken back for refunds`);
  return h("li", { "data-key": `m-${item.kind}-${item.id}`, class: "money-item", "data-kind": item.kind, "data-status": item.status, "data-order-id": item.order_id || null },
    h("div", { class: "spread" }, h("span", {}, what), h("strong", { class: "money-amount" }, money(item.amount_minor))),
    h("p", { class: "small" }, h("span", { class: `money-state ${tone ? `${tone}-text` : ""}` }, word), h("span", { class: "muted" }, ` · ${when(item.created_at)}`)),
    more.length ? h("p", { class: "muted small" }, more.join(" · ")) : null);
}

// Each order's next moves, the short forms some of them need, and partial refunds. The same
// controls on the store's list and on the order's own page.
function staffControls(order) {
  const id = order.id;
  const key = `move-${id}`;
  const open = ui.staffForms.get(id);
  const number = () => h("span", { class: "visually-hidden" }, `, order ${order.number}`);
  const moves = [...(MOVES[order.status] || []), ...(STAFF_CANCELS.has(order.status) ? ["cancelled"] : [])];
  const buttons = moves.map((to, i) => h("button", {
    class: to === "rejected" || to === "cancelled" ? "danger" : i === 0 ? null : "secondary",
    "data-key": `mv-${to}`, "data-action": WITH_FORM.has(to) ? "move-form" : "move", "data-order": id, "data-to": to,
    "aria-disabled": busy(key), "aria-expanded": WITH_FORM.has(to) ? String(open === to) : null,
  }, MOVE_LABEL[to], number()));
  let form = null;
  if (open === "shipped") {
    form = h("form", { class: "inline-form", "data-key": `ship-${id}`, "data-submit": "ship", "data-order": id, novalidate: true, "aria-label": `Ship ${order.number}` },
      h("label", { for: `carrier-${id}` }, "Carrier"),
      h("input", { id: `carrier-${id}`, name: "carrier", class: "wide", maxlength: "60", autocomplete: "off", placeholder: "UPS, DHL, FedEx…", "data-own": true, "aria-describedby": `msg-${key}` }),
      h("label", { for: `tracking-${id}` }, "Tracking number"),
      h("input", { id: `tracking-${id}`, name: "tracking_number", class: "wide", maxlength: "100", autocomplete: "off", spellcheck: "false", "data-own": true, "aria-describedby": `msg-${key}` }),
      h("div", { class: "row" },
        h("button", { type: "submit", "aria-disabled": busy(key) }, "Mark shipped"),
        h("button", { type: "button", class: "secondary", "data-action": "move-form-close", "data-order": id }, "Back")));
  } else if (open === "rejected" || open === "cancelled") {
    const rejecting = open === "rejected";
    form = h("form", { class: "inline-form", "data-key": `why-${id}`, "data-submit": "move-why", "data-order": id, "data-to": open, novalidate: true, "aria-label": `${rejecting ? "Reject" : "Cancel"} ${order.number}` },
      h("label", { for: `why-${id}` }, `Why? (optional; the customers see it)`),
      h("input", { id: `why-${id}`, name: "reason", class: "wide", maxlength: "500", autocomplete: "off", "data-own": true, "aria-describedby": `msg-${key}` }),
      h("p", { class: "muted small" }, rejecting ? "Rejecting refunds every online payment in full." : "Cancelling refunds every online payment in full and puts the stock back."),
      h("div", { class: "row" },
        h("button", { type: "submit", class: "danger", "aria-disabled": busy(key) }, rejecting ? "Reject the order" : "Cancel the order"),
        h("button", { type: "button", class: "secondary", "data-action": "move-form-close", "data-order": id }, "Back")));
  }
  return h("div", { class: "staff", "data-key": `staff-${id}` },
    buttons.length ? h("div", { class: "row moves", "data-key": "moves" }, buttons) : h("p", { class: "muted small", "data-key": "final" }, "Nothing more to do for this order."),
    form, slot(key), refundForms(order));
}

function focusMoves(orderId) {
  requestAnimationFrame(() => {
    const box = document.querySelector(`[data-key="staff-${orderId}"]`);
    const target = box && (box.querySelector(".moves button") || box.querySelector(`#msg-move-${orderId}`));
    if (target) target.focus();
  });
}

// Send a move; an illegal one (someone moved it meanwhile) reads the order again.
async function sendMove(order, body) {
  const id = order.id;
  const key = `move-${id}`;
  const path = body.to === "cancelled" ? `/api/v1/orders/${id}/cancel` : `/api/v1/orders/${id}/transitions`;
  const payload = body.to === "cancelled" ? { reason: body.reason || null } : body;
  return act(key, async () => {
    let moved;
    try {
      moved = await api("POST", path, payload);
    } catch (error) {
      if (error.code === "illegal_transition" || error.code === "order_not_cancellable") {
        api("GET", `/api/v1/orders/${id}`).then(applyOrder).catch(() => {});
      }
      if (error.code === "tracking_required") focusFirst(`#${fieldOf(error) === "carrier" ? "carrier" : "tracking"}-${id}`);
      throw error;
    }
    ui.staffForms.delete(id);
    applyOrder(moved);
    say(key, `${moved.number} is ${orderWord(moved.status)} now.`, "ok");
    focusMoves(id);
  }, { staff: true, currency: order.currency });
}

const orderById = (id) => (orderLive && orderLive.order && orderLive.order.id === id ? orderLive.order : null)
  || (storeLive && storeLive.items && storeLive.items.find((o) => o.id === id)) || null;

ACTIONS.move = (button) => { const order = orderById(button.dataset.order); if (order) sendMove(order, { to: button.dataset.to }); };
ACTIONS["move-form"] = (button) => {
  const id = button.dataset.order;
  const to = button.dataset.to;
  if (ui.staffForms.get(id) === to) ui.staffForms.delete(id);
  else ui.staffForms.set(id, to);
  unsay(`move-${id}`);
  render();
  if (ui.staffForms.get(id) === to) focusFirst(`#${to === "shipped" ? "carrier" : "why"}-${id}`);
};
ACTIONS["move-form-close"] = (button) => { ui.staffForms.delete(button.dataset.order); unsay(`move-${button.dataset.order}`); render(); focusMoves(button.dataset.order); };
SUBMITS.ship = (form) => {
  const order = orderById(form.dataset.order);
  const carrier = form.querySelector("[name=carrier]").value.trim();
  const number = form.querySelector("[name=tracking_number]").value.trim();
  // Blank fields are left out: the server names what is missing (tracking_required).
  if (order) sendMove(order, { to: "shipped", carrier: carrier || undefined, tracking_number: number || undefined });
};
SUBMITS["move-why"] = (form) => {
  const order = orderById(form.dataset.order);
  const reason = form.querySelector("[name=reason]").value.trim();
  if (order) sendMove(order, { to: form.dataset.to, reason: reason || undefined });
};

// Part of one online payment back: an amount in the currency's major units, made minor
// without floating point (parseAmount).
function refundForms(order) {
  const online = order.payments.filter((p) => p.method === "online" && (REFUNDABLE.has(p.status) || p.refunded_minor > 0));
  if (!online.length) return null;
  const money = (minor) => formatMoney(minor, order.currency);
  return h("details", { class: "refunds", "data-key": `refunds-${order.id}`, "data-own": true },
    h("summary", {}, "Refund part of a payment", h("span", { class: "visually-hidden" }, `, order ${order.number}`)),
    online.map((p) => {
      const key = `refund-${order.id}-${p.user_id}`;
      const left = REFUNDABLE.has(p.status) ? Math.max(0, p.amount_minor - p.refunded_minor) : 0;
      const paidText = `${p.display_name} paid ${money(p.amount_minor)} online${p.refunded_minor ? `, ${money(p.refunded_minor)} refunded so far` : ""}.`;
      if (!left) return h("div", { class: "refund", "data-key": key }, h("p", { class: "muted small" }, `${paidText} Nothing more can go back.`), slot(key));
      return h("form", { class: "refund", "data-key": key, "data-submit": "refund", "data-order": order.id, "data-user": p.user_id, novalidate: true },
        h("p", { class: "small", id: `${key}-paid` }, `${paidText} Up to ${money(left)} can go back.`),
        h("label", { for: `${key}-amount` }, `Amount to refund to ${p.display_name} (${order.currency})`),
        h("input", { id: `${key}-amount`, name: "amount", inputmode: "decimal", class: "qty wide", autocomplete: "off", "data-own": true, "aria-describedby": `${key}-paid msg-${key}` }),
        h("label", { for: `${key}-reason` }, "Why? (optional)"),
        h("input", { id: `${key}-reason`, name: "reason", class: "wide", maxlength: "500", autocomplete: "off", "data-own": true }),
        h("p", {}, h("button", { type: "submit", class: "secondary", "aria-disabled": busy(key) }, `Refund ${p.display_name}`)),
        slot(key));
    }));
}

SUBMITS.refund = (form) => {
  const order = orderById(form.dataset.order);
  if (!order) return;
  const userId = form.dataset.user;
  const key = `refund-${order.id}-${userId}`;
  const payment = order.payments.find((p) => p.user_id === userId && p.method === "online");
  const amount = parseAmount(form.querySelector("[name=amount]").value, order.currency);
  if (amount === null || amount === 0) { say(key, `Enter the amount in ${order.currency}, like ${formatMoney(250 * 10 ** Math.max(0, minorDigits(order.currency) - 2), order.currency)}.`); return; }
  const reason = form.querySelector("[name=reason]").value.trim();
  act(key, async () => {
    const refund = await api("POST", `/api/v1/orders/${order.id}/refunds`, { amount_minor: amount, user_id: userId, reason: reason || null });
    for (const input of form.querySelectorAll("input")) input.value = "";
    applyOrder(refund.order);
    const sum = formatMoney(refund.amount_minor, order.currency);
    say(key, refund.status === "succeeded" ? `Refunded ${sum} to ${payment.display_name}.` : `Refund of ${sum} to ${payment.display_name} asked; the bank confirms it shortly.`, "ok");
  }, { staff: true, currency: order.currency });
};

route();
