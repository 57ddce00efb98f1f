// Live updates of the batch page: fetch the server-rendered part every 2 s and swap it in.
// No framework, no build step. Polling pauses while the tab is hidden.
(function () {
  "use strict";
  const INTERVAL = 2000;
  function start(el) {
    const url = el.getAttribute("data-live");
    let busy = false;
    async function tick() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
        if (r.redirected || r.status === 401) { window.location = "/login"; return; }
        if (r.ok) {
          el.innerHTML = await r.text();
          el.setAttribute("data-updated", new Date().toISOString());
        }
      } catch (e) {
        // The server may be restarting; try again at the next tick.
      } finally {
        busy = false;
      }
    }
    setInterval(tick, INTERVAL);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(start);
  });
})();
