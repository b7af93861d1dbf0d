// What the course's static pages share: the feature explorer's, and the attribution-graph
// page's, which copies this file from the explorer's folder. Building elements, formatting
// numbers, and a snippet of code shaded by a feature's activation. All text goes in through
// textContent, never innerHTML, so snippets of code are shown exactly as written.
"use strict";

window.coursePage = (function () {
  const SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, not an address to fetch

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function fmt(x) {
    if (x === null || x === undefined) return "—";
    return Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3);
  }

  // A snippet as one span per byte, shaded by the feature's activation on it (relative to
  // the feature's maximum). byteText[b] shows byte b; describe(b, activation) is its tooltip.
  function snippetNode(s, featureMax, byteText, describe) {
    const line = el("span", "code");
    s.tokens.forEach((b, i) => {
      const act = s.acts[i];
      const tok = el("span", "tok", byteText[b]);
      if (b < 32 || b >= 127) tok.classList.add("glyph");
      if (i === s.max) tok.classList.add("peak");
      if (act > 0) {
        const alpha = Math.min(1, act / (featureMax || 1));
        tok.style.backgroundColor = "rgba(255, 140, 0, " + alpha.toFixed(3) + ")";
      }
      tok.title = describe(b, act);
      line.appendChild(tok);
    });
    return line;
  }

  // A feature's top snippets, each after its peak activation.
  function snippetList(snippets, featureMax, byteText, describe) {
    const list = el("ol", "snippets");
    for (const s of snippets) {
      const item = el("li", "snippet");
      item.appendChild(el("span", "snippet-max", fmt(s.acts[s.max])));
      item.appendChild(snippetNode(s, featureMax, byteText, describe));
      list.appendChild(item);
    }
    return list;
  }

  return { el, svg, fmt, snippetNode, snippetList };
})();
