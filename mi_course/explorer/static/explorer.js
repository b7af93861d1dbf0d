// The feature explorer: renders window.EXPLORER_DATA (written by data.js) as feature cards.
// All text goes in through textContent, never innerHTML, so snippets of code are shown
// exactly as written and can never inject markup.
"use strict";

(function () {
  const data = window.EXPLORER_DATA;
  const meta = data.meta;
  const features = data.features;
  const page = window.coursePage; // page.js
  const { el, svg, fmt } = page;

  // ------------------------------------------------------------------ small helpers

  function percent(f) {
    if (f === 0) return "0%";
    const p = 100 * f;
    return (p >= 1 ? p.toFixed(1) : p.toPrecision(2)) + "%";
  }

  function byteName(b) {
    return "byte " + b + " (0x" + b.toString(16).padStart(2, "0") + ")";
  }

  function snippetText(s) {
    return s.tokens.map((b) => meta.byte_text[b]).join("");
  }

  // ------------------------------------------------------------------ card contents

  function describeByte(b, act) {
    return JSON.stringify(meta.byte_label[b]) + " " + byteName(b) + ": activation " + fmt(act);
  }

  function snippetNode(s, featureMax) {
    return page.snippetNode(s, featureMax, meta.byte_text, describeByte);
  }

  function snippetList(feature) {
    return page.snippetList(feature.snippets, feature.max, meta.byte_text, describeByte);
  }

  // The histogram of nonzero activations as an inline SVG bar chart.
  function histogram(feature) {
    const counts = feature.histogram;
    const width = 320, height = 90, left = 34, bottom = 16, top = 6;
    const plotW = width - left - 4, plotH = height - bottom - top;
    const most = Math.max(1, ...counts);
    const chart = svg("svg", {
      class: "histogram", width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
    });
    const total = counts.reduce((a, b) => a + b, 0);
    chart.appendChild(svg("title")).textContent =
      "Histogram of the " + total + " nonzero activations, from 0 to " + fmt(feature.max);
    const barW = plotW / counts.length;
    counts.forEach((count, i) => {
      const h = (count / most) * plotH;
      const bar = svg("rect", {
        class: "bar", x: left + i * barW + 0.5, y: top + plotH - h, width: Math.max(barW - 1, 1), height: h,
      });
      const lo = (feature.max * i) / counts.length, hi = (feature.max * (i + 1)) / counts.length;
      bar.appendChild(svg("title")).textContent = "[" + fmt(lo) + ", " + fmt(hi) + "): " + count;
      chart.appendChild(bar);
    });
    chart.appendChild(svg("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH }));
    const label = (x, y, anchor, text) => {
      const t = svg("text", { x: x, y: y, "text-anchor": anchor });
      t.textContent = text;
      chart.appendChild(t);
    };
    label(left, height - 3, "start", "0");
    label(left + plotW, height - 3, "end", fmt(feature.max));
    label(left - 4, top + 8, "end", String(most));
    label(left - 4, top + plotH, "end", "0");
    return chart;
  }

  function tokenList(pairs, className) {
    const list = el("ul", "tokens " + className);
    for (const [b, value] of pairs) {
      const item = el("li", "code");
      item.title = byteName(b) + ": " + (value >= 0 ? "+" : "") + fmt(value) + " to its logit per unit of activation";
      item.appendChild(el("span", "", meta.byte_label[b]));
      item.appendChild(el("span", "value", (value >= 0 ? "+" : "") + fmt(value)));
      list.appendChild(item);
    }
    return list;
  }

  function section(title, content) {
    const box = el("section");
    box.appendChild(el("h3", "", title));
    box.appendChild(content);
    return box;
  }

  function cardBody(feature) {
    const body = el("div", "card-body");
    if (feature.dead) {
      body.appendChild(el("p", "muted", "Dead: this feature never fired on the " + meta.n_tokens + " tokens read."));
    } else {
      body.appendChild(section("Top activations (" + feature.snippets.length + " windows; hover a byte for its activation)",
        snippetList(feature)));
    }
    const columns = el("div", "columns");
    if (!feature.dead) columns.appendChild(section("Activation histogram (nonzero only)", histogram(feature)));
    columns.appendChild(section("Promotes", tokenList(feature.promoted, "promoted")));
    columns.appendChild(section("Suppresses", tokenList(feature.suppressed, "suppressed")));
    body.appendChild(columns);
    return body;
  }

  // ------------------------------------------------------------------ cards

  // A few bytes either side of the top activation, for the collapsed card.
  function preview(feature) {
    const node = el("span", "preview code");
    if (feature.dead) {
      node.textContent = "dead";
      node.classList.add("muted");
      return node;
    }
    const s = feature.snippets[0];
    const start = Math.max(0, s.max - 20), end = Math.min(s.tokens.length, s.max + 6);
    node.appendChild(snippetNode({ tokens: s.tokens.slice(start, end), acts: s.acts.slice(start, end), max: s.max - start },
      feature.max));
    return node;
  }

  function card(feature) {
    const details = el("details", "card");
    details.id = "feature-" + feature.id;
    details.dataset.id = feature.id;
    if (feature.dead) details.classList.add("dead");
    const summary = el("summary");
    summary.appendChild(el("span", "fid", "#" + feature.id));
    summary.appendChild(el("span", "stat", feature.dead ? "never fires" : "fires " + percent(feature.frequency)));
    summary.appendChild(el("span", "stat", feature.dead ? "" : "max " + fmt(feature.max)));
    summary.appendChild(preview(feature));
    if (feature.label) summary.appendChild(el("span", "label", feature.label));
    details.appendChild(summary);
    // Rendered on first opening: thousands of cards' snippets at once would be slow.
    details.addEventListener("toggle", () => {
      if (details.open && !details.querySelector(".card-body")) details.appendChild(cardBody(feature));
    });
    return details;
  }

  // Everything a search can match, lower-cased: id, label, snippet text, token labels.
  function haystack(feature) {
    const parts = ["#" + feature.id, feature.label || ""];
    for (const s of feature.snippets) parts.push(snippetText(s));
    for (const [b] of feature.promoted.concat(feature.suppressed)) parts.push(meta.byte_label[b]);
    return parts.join("\n").toLowerCase();
  }

  // ------------------------------------------------------------------ search and sort

  const container = document.getElementById("features");
  const search = document.getElementById("search");
  const sort = document.getElementById("sort");
  const hideDead = document.getElementById("hide-dead");
  const count = document.getElementById("count");

  const entries = features.map((feature) => ({ feature: feature, node: card(feature), text: haystack(feature) }));

  function matches(entry, query) {
    if (!query) return true;
    const id = /^#(\d+)$/.exec(query); // "#12" means feature 12 and nothing else
    if (id) return entry.feature.id === Number(id[1]);
    return (/^\d+$/.test(query) && entry.feature.id === Number(query)) || entry.text.includes(query);
  }

  const sorters = {
    id: (a, b) => a.feature.id - b.feature.id,
    frequency: (a, b) => b.feature.frequency - a.feature.frequency || a.feature.id - b.feature.id,
    max: (a, b) => b.feature.max - a.feature.max || a.feature.id - b.feature.id,
  };

  function update() {
    const query = search.value.trim().toLowerCase();
    let shown = 0;
    const ordered = entries.slice().sort(sorters[sort.value]);
    for (const entry of ordered) {
      const visible = matches(entry, query) && !(hideDead.checked && entry.feature.dead);
      entry.node.hidden = !visible;
      shown += visible ? 1 : 0;
      container.appendChild(entry.node); // appending an existing node moves it: this sorts
    }
    count.textContent = "Showing " + shown + " of " + entries.length + " features";
  }

  document.title = meta.title;
  document.getElementById("title").textContent = meta.title;
  document.getElementById("subtitle").textContent =
    meta.d_sae + " features, " + entries.length + " shown (" + meta.n_dead + " dead), read on " + meta.n_windows +
    " validation windows (" + meta.n_tokens + " tokens). Bytes: ⏎ newline, → tab.";
  search.addEventListener("input", update);
  sort.addEventListener("change", update);
  hideDead.addEventListener("change", update);
  update();
})();
