/*
 * Chat 2 Pay in the browser: live countdowns on payment cards and pay pages, and the desk's dialogs.
 *
 * A countdown is any element with data-countdown and data-seconds-left (computed by the server when it
 * rendered the element, so a wrong clock on this computer does not matter). When a push replaces the
 * element, the new one starts from its own figure. Reaching 0:00 changes nothing by itself: the server
 * expires the request and pushes the new state within about a second.
 *
 * Dialogs: a <dialog data-modal> that htmx swaps in opens as a modal, and is removed when closed.
 */
(function () {
  "use strict";
  if (window.chat2payLoaded) return;
  window.chat2payLoaded = true;

  const firstSeen = new WeakMap();

  function format(seconds) {
    const minutes = Math.floor(seconds / 60);
    return minutes + ":" + String(seconds % 60).padStart(2, "0");
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-countdown]")) {
      if (!firstSeen.has(el)) firstSeen.set(el, now);
      const left = Math.max(0, Math.ceil(Number(el.getAttribute("data-seconds-left")) - (now - firstSeen.get(el)) / 1000));
      el.textContent = format(left);
      if (left === 0) el.setAttribute("data-overdue", "");
    }
  }

  function openDialogs() {
    for (const dialog of document.querySelectorAll("dialog[data-modal]:not([open])")) {
      if (!dialog.isConnected) continue;
      dialog.addEventListener("close", function () { dialog.remove(); }, { once: true });
      dialog.showModal();
    }
  }

  document.addEventListener("htmx:afterSettle", function () {
    openDialogs();
    tick();
  });
  document.addEventListener("chatdesk:applied", tick);
  document.addEventListener("DOMContentLoaded", tick);
  window.setInterval(tick, 1000);
})();
