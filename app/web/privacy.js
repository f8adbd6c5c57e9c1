// The access-pattern page: reads /privacy/patterns with the auditor's token (from the URL
// fragment, which never reaches a server, or the form) and draws each chart as SVG bars.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f6fb3", "#d9822b", "#3a9a5b", "#b53f51", "#7a5bb5", "#5f7f8f"];

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

// bars: [{label, value, colour?}]; an empty list says so in words.
function barChart(container, bars) {
  container.replaceChildren();
  if (bars.length === 0) {
    container.textContent = "None in this period.";
    container.dataset.bars = "0";
    return;
  }
  const width = 800, rowHeight = 22, labelWidth = 260;
  const max = Math.max(...bars.map((b) => b.value), 1);
  const svg = el("svg", { width, height: bars.length * rowHeight + 4, role: "img" }, container);
  bars.forEach((bar, i) => {
    const y = i * rowHeight + 2;
    const text = el("text", { x: 0, y: y + 15, "font-size": 12, fill: "#1d2733" }, svg);
    text.textContent = bar.label;
    const length = Math.max(2, ((width - labelWidth - 60) * bar.value) / max);
    el("rect", { x: labelWidth, y, width: length, height: rowHeight - 6,
      fill: bar.colour || COLOURS[0], class: "bar" }, svg);
    const count = el("text", { x: labelWidth + length + 6, y: y + 15, "font-size": 12 }, svg);
    count.textContent = String(bar.value);
  });
  container.dataset.bars = String(bars.length);
}

function byUser(counts) {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([label, value], i) => ({ label, value, colour: COLOURS[i % COLOURS.length] }));
}

// One bar per hour and user, coloured per user.
function perUserHour(counts) {
  const users = [...new Set(Object.values(counts).flatMap((u) => Object.keys(u)))].sort();
  const bars = [];
  for (const [hour, perUser] of Object.entries(counts)) {
    for (const [user, value] of Object.entries(perUser)) {
      const colour = COLOURS[users.indexOf(user) % COLOURS.length];
      bars.push({ label: `${hour.slice(0, 13).replace("T", " ")}h ${user}`, value, colour });
    }
  }
  return bars;
}

function showAlerts(alerts) {
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren();
  for (const alert of alerts) {
    const row = document.createElement("tr");
    row.dataset.rule = alert.rule;
    for (const value of [alert.at, alert.rule, alert.subject, alert.count, alert.detail]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

async function show(token, days) {
  const status = document.getElementById("status");
  status.textContent = "Loading…";
  const response = await fetch(`/privacy/patterns?days=${encodeURIComponent(days)}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json();
  if (!response.ok) {
    status.textContent = body.errors ? body.errors[0].message : `HTTP ${response.status}`;
    document.body.dataset.ready = "error";
    return;
  }
  barChart(document.getElementById("per-user-hour"), perUserHour(body.perUserHour));
  barChart(document.getElementById("after-hours"), byUser(body.afterHours));
  barChart(document.getElementById("break-glass"), byUser(body.breakGlass));
  barChart(document.getElementById("denials"), byUser(body.denials));
  barChart(document.getElementById("volumes"), byUser(body.patientsPerUser));
  showAlerts(body.alerts);
  status.textContent = `From ${body.since} to ${body.until}: ${body.alerts.length} alerts.`;
  document.body.dataset.ready = "yes";
}

document.getElementById("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  show(document.getElementById("token").value.trim(), document.getElementById("days").value);
});

const fragment = new URLSearchParams(window.location.hash.slice(1));
if (fragment.get("token")) {
  const token = fragment.get("token");
  history.replaceState(null, "", window.location.pathname); // the token leaves the address bar
  show(token, fragment.get("days") || "7");
}
