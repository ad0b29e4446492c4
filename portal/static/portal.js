// Enhancements only: every page works without JavaScript.
// 1. Live pages (body[data-live]) fetch themselves again every few seconds and swap their <main>.
// 2. Tables marked data-chart="line" get a uPlot chart when the bundled library is on the page.
(function () {
  "use strict";
  // A suppressed or missing cell is a gap in the line (null), never a value.
  function number(td) { var v = parseFloat(td.getAttribute("data-value")); return isNaN(v) ? null : v; }
  function charts(root) {
    if (!window.uPlot) return;
    root.querySelectorAll("table[data-chart=line]").forEach(function (table) {
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      var width = table.tHead.rows[0].cells.length;
      if (!rows.length || rows[0].cells.length < width) return;  // no data yet: the table says so
      // x: the row header's data-x when given (a month as Unix time on a time axis), else its number.
      var time = table.getAttribute("data-x") === "time";
      var xs = rows.map(function (r) {
        var x = r.cells[0].getAttribute("data-x");
        return x === null ? parseInt(r.cells[0].textContent, 10) : parseFloat(x);
      });
      var series = [xs];
      var names = Array.prototype.slice.call(table.tHead.rows[0].cells).map(function (c) { return c.textContent; });
      for (var i = 1; i < names.length; i++) {
        series.push(rows.map(function (r) { return number(r.cells[i]); }));
      }
      var box = document.createElement("div");
      box.className = "chart";
      box.setAttribute("aria-hidden", "true");
      table.parentNode.insertBefore(box, table);
      var colours = ["#0b5394", "#b35900", "#2e7d32"];
      new window.uPlot({
        width: Math.min(720, table.parentNode.clientWidth || 720), height: 240,
        scales: { x: { time: time } },
        series: [{}].concat(names.slice(1).map(function (n, k) { return { label: n, stroke: colours[k % 3], width: 2 }; }))
      }, series, box);
    });
  }
  function live() {
    var every = parseInt(document.body.getAttribute("data-live") || "0", 10);
    if (!every) return;
    var last = document.querySelector("main").innerHTML;
    setInterval(function () {
      fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (resp) { return resp.ok ? resp.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          var main = document.querySelector("main");
          if (fresh && main && fresh.innerHTML !== last) {
            last = fresh.innerHTML;
            main.innerHTML = last;
            charts(main);
          }
        })
        .catch(function () {});
    }, every * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () { live(); charts(document); });
})();
