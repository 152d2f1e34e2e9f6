/*
 * Live updates for Chat Desk pages.
 *
 * The page names its websocket in <body data-live-url>. The server sends small ops:
 *   {op: "upsert", html, container?}  replace the element with the same id if the new one has a higher
 *                                      data-version (late or duplicate pushes are ignored); an element that is
 *                                      not on the page yet is inserted into `container`, ordered by data-sort.
 *   {op: "replace", html}              replace the element with the same id outright (a snapshot).
 *   {op: "refresh", target}            re-read that element from the database: a list through htmx
 *                                      (desk:refresh), the open conversation pane by reloading the page.
 * Every (re)connect starts with a snapshot from the server, so nothing missed while offline stays missing.
 */
(function () {
  "use strict";

  const PING_MS = 25000;
  const MAX_BACKOFF_MS = 15000;

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function version(el) {
    return Number(el.getAttribute("data-version") || 0);
  }

  function activate(el) {
    if (window.htmx) window.htmx.process(el);
  }

  function insertSorted(container, el) {
    const key = el.getAttribute("data-sort") || "";
    for (const child of container.children) {
      const childKey = child.getAttribute("data-sort");
      if (childKey !== null && childKey > key) {
        container.insertBefore(el, child);
        return;
      }
    }
    container.appendChild(el);
  }

  function upsert(el, containerId) {
    if (!el || !el.id) return;
    const current = document.getElementById(el.id);
    if (current) {
      if (version(el) <= version(current)) return;
      const keep = current.hasAttribute("data-mode") && current.getAttribute("data-mode") === el.getAttribute("data-mode");
      if (keep) {
        current.setAttribute("data-version", String(version(el)));
        return;
      }
      current.replaceWith(el);
      activate(el);
      return;
    }
    const container = containerId && document.getElementById(containerId);
    if (container) {
      insertSorted(container, el);
      activate(el);
      container.scrollTop = container.scrollHeight;
    }
  }

  function replace(el) {
    const current = el && el.id && document.getElementById(el.id);
    if (!current) return;
    current.replaceWith(el);
    activate(el);
    el.scrollTop = el.scrollHeight;
  }

  const REFRESH_COALESCE_MS = 200;
  const pendingRefreshes = new Map();

  function refresh(targetId) {
    // The open conversation has no htmx re-fetch of its own: reload the page and let the server decide
    // what this viewer may still see (e.g. another agent has just accepted the chat).
    if (targetId === "conversation-pane") {
      window.location.reload();
      return;
    }
    // Coalesce a burst of hints (e.g. a sweep expiring many requests) into one re-fetch per element.
    if (!document.getElementById(targetId) || pendingRefreshes.has(targetId)) return;
    pendingRefreshes.set(targetId, window.setTimeout(function () {
      pendingRefreshes.delete(targetId);
      const target = document.getElementById(targetId);
      if (target && window.htmx) window.htmx.trigger(target, "desk:refresh");
    }, REFRESH_COALESCE_MS));
  }

  function apply(message) {
    if (message.op === "upsert") upsert(parse(message.html), message.container);
    else if (message.op === "replace") replace(parse(message.html));
    else if (message.op === "refresh") refresh(message.target);
    document.dispatchEvent(new CustomEvent("chatdesk:applied", { detail: message }));
  }

  function setState(state, text) {
    const indicator = document.getElementById("connection");
    if (!indicator) return;
    indicator.setAttribute("data-state", state);
    indicator.querySelector(".connection-text").textContent = text;
  }

  // The payment cards this page shows, {id: version}: the server answers a ping with any newer one, so a
  // push lost on the way (a worker killed after its commit, a Redis restart) is made good within a ping.
  function cardVersions() {
    const cards = {};
    document.querySelectorAll("[data-payment-request-id][data-version]").forEach(function (el) {
      cards[el.getAttribute("data-payment-request-id")] = version(el);
    });
    return cards;
  }

  function connect(path) {
    let backoff = 500;
    let pingTimer = null;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";

    function open() {
      const socket = new WebSocket(scheme + "://" + window.location.host + path);
      socket.addEventListener("open", function () {
        backoff = 500;
        setState("live", "Live");
        pingTimer = window.setInterval(function () {
          socket.send(JSON.stringify({ type: "ping", cards: cardVersions() }));
        }, PING_MS);
      });
      socket.addEventListener("message", function (event) {
        apply(JSON.parse(event.data));
      });
      socket.addEventListener("close", function (event) {
        window.clearInterval(pingTimer);
        if (event.code === 4403) {
          setState("offline", "Signed out");
          return;
        }
        setState("offline", "Reconnecting…");
        window.setTimeout(open, backoff + Math.random() * 250);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      });
    }
    open();
  }

  // Responses to htmx requests carry new elements as <template class="live-upsert">, applied like pushes.
  document.addEventListener("htmx:afterSettle", function (event) {
    for (const template of event.detail.elt.ownerDocument.querySelectorAll("template.live-upsert")) {
      upsert(template.content.firstElementChild.cloneNode(true), template.getAttribute("data-container"));
      template.remove();
    }
  });

  // Toasts fade out on their own.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    const toasts = document.getElementById("toasts");
    if (!toasts) return;
    for (const toast of toasts.querySelectorAll(".toast:not([data-timer])")) {
      toast.setAttribute("data-timer", "1");
      window.setTimeout(function () { toast.remove(); }, 8000);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    const path = document.body.getAttribute("data-live-url");
    if (path) connect(path);
  });
})();
