// Keeps the server-rendered page current: relative times tick, and when the overview's
// fingerprint changes the page's <main> is replaced by a freshly rendered one.
(() => {
  const REFRESH_MS = 15000;
  const units = [[86400, "d"], [3600, "h"], [60, "min"]];
  const relative = (seconds) => {
    if (seconds < 45) return "just now";
    for (const [size, unit] of units) if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
    return "just now";
  };
  const tick = () => {
    for (const t of document.querySelectorAll("time[datetime]")) {
      t.textContent = relative((Date.now() - Date.parse(t.getAttribute("datetime"))) / 1000);
    }
  };
  const select = document.getElementById("namespace");
  if (select) select.addEventListener("change", () => select.form.submit());

  const refresh = async () => {
    try {
      const answer = await fetch(document.body.dataset.api, { credentials: "same-origin" });
      if (answer.status === 401) { window.location.assign("/dashboard/login"); return; }
      if (!answer.ok) return;
      const overview = await answer.json();
      if (overview.fingerprint === document.body.dataset.fingerprint) return;
      const page = await fetch(window.location.href, { credentials: "same-origin" });
      if (!page.ok) return;
      const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
      const main = fresh.getElementById("content");
      if (!main) return;
      document.getElementById("content").replaceWith(document.adoptNode(main));
      document.body.dataset.fingerprint = fresh.body.dataset.fingerprint;
      tick();
    } catch (error) {
      // the gateway restarting or the network gone: try again at the next interval
    }
  };
  tick();
  setInterval(tick, 30000);
  setInterval(refresh, REFRESH_MS);
})();
