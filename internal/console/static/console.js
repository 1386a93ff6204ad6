// jetflow console: progressive enhancement only. Every page works without
// this script; with it, countdowns tick and the live parts of a page
// refresh themselves while nobody is typing into a form.
(function () {
  "use strict";

  function fmt(ms) {
    var neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
    var out = (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + sec + "s";
    return neg ? "due " + out + " ago" : "in " + out;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (!isNaN(due)) el.textContent = fmt(due - now);
    });
  }

  function editing() {
    var a = document.activeElement;
    if (a && a.form) return true;
    return Array.prototype.some.call(document.querySelectorAll("form.action input:not([type=hidden]), form.action textarea"), function (el) {
      return el.value !== "";
    });
  }

  function refresh() {
    if (document.hidden || editing()) return;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["live", "live-rows"].forEach(function (id) {
          var cur = document.getElementById(id), next = doc.getElementById(id);
          if (!cur || !next) return;
          // Keep open event bodies open.
          var open = {};
          cur.querySelectorAll("details[open]").forEach(function (d) {
            var li = d.closest("[data-seq]");
            if (li) open[li.getAttribute("data-seq")] = true;
          });
          if (cur.innerHTML === next.innerHTML) return;
          cur.innerHTML = next.innerHTML;
          cur.querySelectorAll("[data-seq]").forEach(function (li) {
            var d = li.querySelector("details");
            if (d && open[li.getAttribute("data-seq")]) d.open = true;
          });
        });
        tick();
      })
      .catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    var main = document.getElementById("main");
    var every = main && parseInt(main.getAttribute("data-refresh"), 10);
    if (every > 0) setInterval(refresh, every * 1000);
  });
})();
