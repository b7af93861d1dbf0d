// The attribution-graph page: draws window.GRAPH_DATA.graph (circuit-tracer's JSON, written by
// data.js) as an SVG, input tokens along the bottom and layers upward, and shows a clicked
// node's details. All text goes in through textContent, never innerHTML.
"use strict";

(function () {
  const data = window.GRAPH_DATA;
  const graph = data.graph;
  const meta = graph.metadata;
  const tokens = meta.prompt_tokens;

  // Layout, in SVG pixels: each node gets a SLOT of width in its (position, row) cell, and a
  // full cell wraps onto lines of PER_LINE nodes, LINE apart.
  const SLOT = 24, LINE = 26, PER_LINE = 8, MIN_COLUMN = 36, LEFT = 96, RIGHT = 16, TOP = 34, BOTTOM = 44;

  // ------------------------------------------------------------------ small helpers

  const page = window.coursePage; // page.js, shared with the feature explorer
  const { el, svg, fmt } = page;

  function signed(x) {
    return (x >= 0 ? "+" : "") + fmt(x);
  }

  // ------------------------------------------------------------------ the nodes

  const KIND = {
    "cross layer transcoder": "feature",
    "mlp reconstruction error": "error",
    embedding: "embedding",
    logit: "logit",
  };

  const nodes = graph.nodes.map((raw) => {
    const [layer, feature] = raw.node_id.split("_");
    return Object.assign({}, raw, {
      kind: KIND[raw.feature_type] || "feature",
      key: layer + "_" + feature, // how data.snippets names a feature: "{layer}_{feature}"
      incoming: [],
      outgoing: [],
    });
  });
  const byId = new Map(nodes.map((node) => [node.node_id, node]));
  const links = graph.links.filter((link) => byId.has(link.source) && byId.has(link.target));
  for (const link of links) {
    byId.get(link.source).outgoing.push(link);
    byId.get(link.target).incoming.push(link);
  }

  // Rows, bottom to top: embeddings (layer "E"), then layer L's features and errors in row
  // L + 1, then the logits, which circuit-tracer files under layer n_layers + 1: the row
  // above the last layer's.
  for (const node of nodes) {
    node.row = node.kind === "embedding" ? 0 : node.kind === "logit" ? +node.layer : +node.layer + 1;
  }
  const nRows = Math.max(2, ...nodes.map((n) => n.row + 1));

  function tokenAt(position) {
    return tokens[position] === undefined ? "" : tokens[position];
  }

  function logitToken(node) {
    const quoted = /"(.*)"/.exec(node.clerp || "");
    return quoted ? quoted[1] : "#" + node.feature;
  }

  function label(node) {
    const at = " at " + node.ctx_idx + " “" + tokenAt(node.ctx_idx) + "”";
    if (node.kind === "feature") return "L" + node.layer + " #" + node.key.split("_")[1] + at;
    if (node.kind === "error") return "L" + node.layer + " error" + at;
    if (node.kind === "embedding") return "token" + at;
    return "logit “" + logitToken(node) + "”";
  }

  // ------------------------------------------------------------------ layout

  // Nodes sharing a (position, row) cell sit side by side: features most influential first
  // (circuit-tracer's influence is a cumulative score, smaller = more important), errors
  // last, logits most probable first.
  const cells = new Map();
  for (const node of nodes) {
    const cell = node.ctx_idx + ":" + node.row;
    if (!cells.has(cell)) cells.set(cell, []);
    cells.get(cell).push(node);
  }
  const rank = (n) => (n.kind === "logit" ? -n.token_prob : n.influence ?? 0);
  for (const cell of cells.values()) {
    cell.sort((a, b) => (a.kind === "error") - (b.kind === "error") || rank(a) - rank(b));
  }

  // A column is as wide as its widest cell, a row as tall as its tallest; each token's label
  // sits under its column's centre.
  const nColumns = Math.max(tokens.length, ...nodes.map((n) => n.ctx_idx + 1));
  const columnWidth = Array.from({ length: nColumns }, () => MIN_COLUMN);
  let mostLines = 1;
  for (const cell of cells.values()) {
    const position = cell[0].ctx_idx;
    columnWidth[position] = Math.max(columnWidth[position], Math.min(cell.length, PER_LINE) * SLOT);
    mostLines = Math.max(mostLines, Math.ceil(cell.length / PER_LINE));
  }
  const columnStart = [LEFT];
  for (const width of columnWidth) columnStart.push(columnStart[columnStart.length - 1] + width);
  const rowHeight = Math.max(110, mostLines * LINE + 50);
  const rowY = (row) => TOP + (mostLines - 1) * LINE / 2 + (nRows - 1 - row) * rowHeight;
  const width = columnStart[nColumns] + RIGHT, height = rowY(0) + BOTTOM;

  for (const cell of cells.values()) {
    const position = cell[0].ctx_idx, lines = Math.ceil(cell.length / PER_LINE);
    const left = columnStart[position] + (columnWidth[position] - Math.min(cell.length, PER_LINE) * SLOT) / 2;
    cell.forEach((node, i) => {
      node.x = left + ((i % PER_LINE) + 0.5) * SLOT;
      node.y = rowY(node.row) + (Math.floor(i / PER_LINE) - (lines - 1) / 2) * LINE;
    });
  }

  // ------------------------------------------------------------------ drawing

  const chart = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img" });
  chart.appendChild(svg("title")).textContent = "Attribution graph of “" + meta.prompt + "”";

  function text(x, y, className, content, anchor) {
    const t = svg("text", { x: x, y: y, class: className, "text-anchor": anchor || "middle" });
    t.textContent = content;
    chart.appendChild(t);
    return t;
  }

  for (let row = 0; row < nRows; row++) {
    const name = row === 0 ? "embeddings" : row === nRows - 1 ? "logits" : "layer " + (row - 1);
    text(8, rowY(row) + 4, "row-label", name, "start");
  }
  tokens.forEach((token, position) => {
    const tokenLabel = text(columnStart[position] + columnWidth[position] / 2, height - 12, "token", token);
    tokenLabel.appendChild(svg("title")).textContent = "position " + position;
  });

  // Edges first, so nodes sit on top; weakest first, so strong edges are drawn over weak ones.
  const maxWeight = Math.max(1e-12, ...links.map((link) => Math.abs(link.weight)));
  for (const link of links.slice().sort((a, b) => Math.abs(a.weight) - Math.abs(b.weight))) {
    const source = byId.get(link.source), target = byId.get(link.target);
    link.line = svg("line", {
      class: "edge " + (link.weight >= 0 ? "positive" : "negative"),
      x1: source.x, y1: source.y, x2: target.x, y2: target.y,
      "stroke-width": (0.4 + 4.6 * Math.abs(link.weight) / maxWeight).toFixed(2),
      "data-source": link.source, "data-target": link.target,
    });
    chart.appendChild(link.line);
  }

  function shape(node) {
    const { x, y } = node;
    if (node.kind === "feature") return svg("circle", { class: "shape", cx: x, cy: y, r: 7 });
    if (node.kind === "error") {
      return svg("rect", { class: "shape", x: x - 5, y: y - 5, width: 10, height: 10, transform: `rotate(45 ${x} ${y})` });
    }
    if (node.kind === "embedding") return svg("rect", { class: "shape", x: x - 7, y: y - 7, width: 14, height: 14 });
    return svg("rect", { class: "shape", x: x - 9, y: y - 7, width: 18, height: 14, rx: 3 });
  }

  for (const node of nodes) {
    const group = svg("g", { class: "node " + node.kind + (node.is_target_logit ? " target" : ""), "data-node-id": node.node_id });
    group.appendChild(shape(node));
    group.appendChild(svg("title")).textContent = label(node) + (node.clerp ? "\n" + node.clerp : "");
    const caption = node.kind === "feature" ? node.key.split("_")[1] : node.kind === "logit" ? logitToken(node) : "";
    if (caption) {
      const t = svg("text", { x: node.x, y: node.kind === "logit" ? node.y - 11 : node.y + 16, class: "node-label " + node.kind, "text-anchor": "middle" });
      t.textContent = caption;
      group.appendChild(t);
    }
    group.addEventListener("mouseenter", () => highlight(node, "lit", "hovering"));
    group.addEventListener("mouseleave", () => highlight(null, "lit", "hovering"));
    group.addEventListener("click", () => select(node));
    node.group = group;
    chart.appendChild(group);
  }
  // A wide graph shrinks to fit the page, down to 60% of its size, then scrolls.
  chart.style.minWidth = Math.round(0.6 * width) + "px";
  const container = document.getElementById("graph");
  container.appendChild(chart);
  container.scrollLeft = container.scrollWidth; // the prediction is made at the last position, on the right

  // Mark a node's edges with `edgeClass` and the SVG with `svgClass`; null clears both.
  function highlight(node, edgeClass, svgClass) {
    for (const line of chart.querySelectorAll(".edge." + edgeClass)) line.classList.remove(edgeClass);
    chart.classList.toggle(svgClass, node !== null);
    if (node) for (const link of node.incoming.concat(node.outgoing)) link.line.classList.add(edgeClass);
  }

  // ------------------------------------------------------------------ the details panel

  const panel = document.getElementById("details");

  function topActivations(node) {
    const record = data.snippets[node.key];
    const box = el("details", "top-activations");
    const count = record ? record.snippets.length : 0;
    box.appendChild(el("summary", "", "Top activations on validation code (" + count + ")"));
    if (!count) box.appendChild(el("p", "muted", "No validation window activates this feature."));
    const snippets = record ? record.snippets : [];
    box.appendChild(page.snippetList(snippets, record ? record.max : 0, data.byte_text, (b, act) => "activation " + fmt(act)));
    return box;
  }

  // Edges strongest first; clicking one selects the node at its other end.
  function edgeList(title, edges, otherEnd) {
    const box = el("section");
    box.appendChild(el("h3", "", title + " (" + edges.length + ")"));
    const list = el("ol", "edges " + title.split(" ")[0].toLowerCase());
    for (const link of edges.slice().sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight))) {
      const other = byId.get(link[otherEnd]);
      const button = el("button", link.weight >= 0 ? "positive" : "negative");
      button.type = "button";
      button.appendChild(el("span", "weight", signed(link.weight)));
      button.appendChild(el("span", "", label(other)));
      button.addEventListener("click", () => select(other));
      const item = el("li");
      item.appendChild(button);
      list.appendChild(item);
    }
    box.appendChild(list);
    return box;
  }

  function facts(node) {
    const rows = [["kind", node.feature_type], ["layer", node.layer], ["position", node.ctx_idx + " “" + tokenAt(node.ctx_idx) + "”"]];
    if (node.kind === "feature") rows.unshift(["feature", node.key.split("_")[1]]);
    if (node.kind === "logit") rows.push(["probability", fmt(node.token_prob)]);
    rows.push(["activation", fmt(node.activation)], ["influence", fmt(node.influence)]);
    const list = el("dl", "facts");
    for (const [name, value] of rows) {
      list.appendChild(el("dt", "", name));
      list.appendChild(el("dd", "fact-" + name, String(value)));
    }
    return list;
  }

  function select(node) {
    for (const group of chart.querySelectorAll(".node.selected")) group.classList.remove("selected");
    node.group.classList.add("selected");
    highlight(node, "selected", "has-selection");
    panel.replaceChildren(el("h2", "", label(node)));
    if (node.clerp) panel.appendChild(el("p", "muted", node.clerp));
    panel.appendChild(facts(node));
    if (node.kind === "feature") panel.appendChild(topActivations(node));
    panel.appendChild(edgeList("Incoming edges", node.incoming, "source"));
    panel.appendChild(edgeList("Outgoing edges", node.outgoing, "target"));
  }

  // ------------------------------------------------------------------ the header

  const count = (kind) => nodes.filter((n) => n.kind === kind).length;
  document.title = "Attribution graph: " + meta.prompt;
  document.getElementById("title").textContent = "Attribution graph of “" + meta.prompt + "”";
  document.getElementById("subtitle").textContent =
    nodes.length + " nodes (" + count("feature") + " features, " + count("error") + " errors, " + count("embedding") +
    " tokens, " + count("logit") + " logits) and " + links.length + " edges, pruned at node threshold " +
    meta.node_threshold + (meta.edge_threshold === undefined ? "" : ", edge threshold " + meta.edge_threshold) +
    ". Bytes: ⏎ newline, → tab.";
  panel.appendChild(el("p", "muted", "Click a node to see its details, its edges and, for a feature, the validation code it fires on most."));
})();
