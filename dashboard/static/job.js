// Follows a job: appends new log lines to the tail and, when anything else
// happened (a report, a worker, a checkpoint, a state), reloads the panels
// (ranks, charts, checkpoints), drawn by the server. It long-polls the
// events API; document.body.dataset.live says where it is.
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const id = root.dataset.job;
  const log = document.getElementById("log");
  const maxLines = 200;
  let next = Number(root.dataset.next);

  function append(e) {
    const span = document.createElement("span");
    span.className = e.Stream;
    span.textContent = "[rank " + e.Rank + "] " + e.Line + "\n";
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(span);
    while (log.childNodes.length > maxLines) log.removeChild(log.firstChild);
    if (stick) log.scrollTop = log.scrollHeight;
  }

  async function panels() {
    const r = await fetch("/jobs/" + encodeURIComponent(id) + "/panels", { credentials: "same-origin" });
    if (r.ok) document.getElementById("panels").innerHTML = await r.text();
  }

  async function poll() {
    try {
      const r = await fetch("/api/jobs/" + encodeURIComponent(id) + "/events?from=" + next + "&wait=25",
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error("events: " + r.status);
      const b = await r.json();
      let other = false;
      for (const e of b.Events) {
        if (e.Type === "log") append(e); else other = true;
      }
      next = b.Next;
      if (other || b.Ended) await panels();
      if (b.Ended) {
        document.body.dataset.live = "ended";
        return;
      }
      document.body.dataset.live = "following";
      setTimeout(poll, 250);
    } catch (err) {
      document.body.dataset.live = "error";
      setTimeout(poll, 3000);
    }
  }
  poll();
})();
