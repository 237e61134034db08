// The dashboard's live updates: every page with data-poll on <body> reads its JSON twin every
// 1.5 s and updates its numbers, progress bars and charts in place (no full reload).
(function () {
  "use strict";
  var POLL_MS = 1500;
  var charts = {};
  var COLOURS = ["#2e7d32", "#c62828", "#6a1b9a", "#9e9e9e", "#ef6c00", "#455a64", "#f9a825",
                 "#1565c0", "#00838f", "#8d6e63"];

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }

  function setText(el, value) {
    var text = value == null ? "-" : String(value);
    if (el.textContent !== text) { el.textContent = text; }
  }

  function funnelChart(funnel) {
    var labels = funnel.map(function (step) { return step.label; });
    var values = funnel.map(function (step) { return step.value; });
    if (charts.funnel) {
      charts.funnel.data.datasets[0].data = values;
      charts.funnel.update("none");
      return;
    }
    var canvas = document.getElementById("funnel-chart");
    if (!canvas || !window.Chart) { return; }
    charts.funnel = new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: [{ label: "numbers", data: values,
        backgroundColor: labels.map(function (_, i) { return COLOURS[i % COLOURS.length]; }) }] },
      options: { indexAxis: "y", animation: false, plugins: { legend: { display: false } },
                 maintainAspectRatio: false }
    });
  }

  function outcomesChart(outcomes) {
    var labels = outcomes.minutes.map(function (ms) {
      return new Date(ms).toISOString().slice(11, 16);
    });
    var datasets = Object.keys(outcomes.outcomes).map(function (name, i) {
      return { label: name, data: outcomes.outcomes[name], backgroundColor: COLOURS[i % COLOURS.length] };
    });
    if (charts.outcomes) {
      charts.outcomes.data.labels = labels;
      charts.outcomes.data.datasets = datasets;
      charts.outcomes.update("none");
      return;
    }
    var canvas = document.getElementById("outcomes-chart");
    if (!canvas || !window.Chart) { return; }
    charts.outcomes = new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: { animation: false, maintainAspectRatio: false,
                 scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
    });
  }

  function updateCampaign(data) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      setText(el, get(data, el.getAttribute("data-field")));
    });
    var bar = document.getElementById("progress");
    if (bar) { bar.max = data.valid || 1; bar.value = data.done; }
    funnelChart(data.funnel);
  }

  function updateCampaigns(data) {
    data.campaigns.forEach(function (c) {
      var row = document.querySelector('tr[data-campaign="' + CSS.escape(c.campaign_id) + '"]');
      if (!row) { return; }
      row.querySelectorAll("[data-col]").forEach(function (el) {
        var col = el.getAttribute("data-col");
        if (col === "progress") { el.max = c.valid || 1; el.value = c.done; }
        else { setText(el, c[col]); }
      });
    });
  }

  function updateOverview(data) {
    data.queues.forEach(function (q) {
      var row = document.querySelector('tr[data-queue="' + CSS.escape(q.queue) + '"]');
      if (!row) { return; }
      row.querySelectorAll("[data-col]").forEach(function (el) {
        setText(el, q[el.getAttribute("data-col")]);
      });
    });
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var v = get(data, el.getAttribute("data-field"));
      setText(el, v == null ? "never" : v);
    });
    outcomesChart(data.outcomes);
  }

  var UPDATE = { campaign: updateCampaign, campaigns: updateCampaigns, overview: updateOverview };

  function poll(url, update) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }  // the session ended
        return r.ok ? r.json() : null;
      })
      .then(function (data) { if (data) { update(data); } })
      .catch(function () { /* the next tick tries again */ })
      .finally(function () { window.setTimeout(function () { poll(url, update); }, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var funnel = document.getElementById("funnel-data");
    if (funnel) { funnelChart(JSON.parse(funnel.textContent)); }
    var outcomes = document.getElementById("outcomes-data");
    if (outcomes) { outcomesChart(JSON.parse(outcomes.textContent)); }
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
    var url = document.body.getAttribute("data-poll");
    var update = UPDATE[document.body.getAttribute("data-page")];
    if (url && update) { window.setTimeout(function () { poll(url, update); }, POLL_MS); }
  });
}());
