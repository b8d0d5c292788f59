// Hookline admin UI: the few behaviours htmx does not cover. Served from
// /admin/assets; the page's Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // Live regions: elements with hx-trigger="live from:body" refresh when the
  // server reports new deliveries, attempts or alerts.
  function connect() {
    var url = document.body.getAttribute("data-live-stream");
    if (!url || !window.EventSource || !document.querySelector('[hx-trigger~="live"]')) return;
    var source = new EventSource(url);
    source.addEventListener("changed", function () {
      if (window.htmx) window.htmx.trigger(document.body, "live");
    });
  }

  // Forms that destroy or replace something ask first.
  document.addEventListener("submit", function (e) {
    var message = e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  }, true);

  // Copy buttons for secrets shown once.
  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  });

  // htmx requests carry the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (e) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) e.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
