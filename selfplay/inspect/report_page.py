"""The style sheet and the script of report.html (selfplay.inspect.report_html), as they are
embedded in the page. Plain CSS and JavaScript, no library: the page must work offline from a
file:// URL, and nothing fetched or bundled means no supply chain to trust or update.

The script reads the run's data from the page itself (a gzip-compressed JSON document in base64,
decoded with the browser's DecompressionStream; plain JSON when written uncompressed), then fills
the pair and posed-problem browsers: filters, text search and pages of PAGE rows. When it is done
it sets <body data-ready="1"> ("error" and a message on the page when the data cannot be read), so
a test or a reader knows the browsers are live.
"""

CSS = r"""
:root { --fg: #1d1d1f; --muted: #666; --line: #d8d8de; --bg2: #f5f5f8; --ok: #0a7a33; --bad: #b3261e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; }
header, main { max-width: 1400px; margin: 0 auto; padding: 0 1.2em; }
header h1 { font-size: 1.5em; margin: .8em 0 .3em; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: .4em 1.2em;
      z-index: 2; font-size: 13px; display: flex; flex-wrap: wrap; gap: .1em 0; }
nav a { margin-right: .9em; color: #2456a6; text-decoration: none; white-space: nowrap; }
h2 { font-size: 1.2em; margin: 1.6em 0 .4em; padding-top: .4em; border-top: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 1em 0 .3em; }
p { margin: .4em 0; max-width: 75em; }
.headline { font-size: 1.05em; background: #eef4ff; border: 1px solid #c9d9f5; padding: .6em .8em; border-radius: 6px; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
section { scroll-margin-top: 3em; }
code { background: var(--bg2); padding: 0 .25em; border-radius: 3px; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; margin: .2em 0; font: 12.5px/1.4 ui-monospace, Menlo, monospace;
      background: var(--bg2); padding: .45em .55em; border-radius: 4px; max-height: 28em; overflow: auto; }
img.plot { max-width: 100%; border: 1px solid var(--line); margin: .4em 0; }
.controls { display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: center; margin: .5em 0;
            background: var(--bg2); padding: .5em .7em; border-radius: 6px; }
.controls label { font-size: 13px; }
.controls input[type=search] { width: 22em; }
.pager { display: flex; gap: .6em; align-items: center; margin: .4em 0; }
.count { color: var(--muted); }
article.pair { border: 1px solid var(--line); border-radius: 6px; margin: .6em 0; padding: .5em .7em; }
.meta { color: var(--muted); font-size: 12.5px; }
.question { font-weight: 600; margin: .25em 0; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: .7em; }
.side h4 { margin: .2em 0; font-size: 13px; }
.side.chosen h4 { color: var(--ok); }
.side.rejected h4 { color: var(--bad); }
mark.first-error { background: #ffd0cc; outline: 1px solid var(--bad); border-radius: 2px; }
.steps { font-size: 12px; color: var(--muted); }
details { margin: .3em 0; }
summary { cursor: pointer; }
.agree { color: var(--ok); } .disagree { color: var(--bad); }
#load-status { color: var(--bad); font-weight: 600; }
button.link { background: none; border: none; color: #2456a6; cursor: pointer; padding: 0; font: inherit;
              text-decoration: underline; }
"""

JS = r"""
"use strict";
const PAGE = 50;
const $ = (sel, root) => (root || document).querySelector(sel);

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-") || k === "title") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function loadData() {
  const node = document.getElementById("selfplay-data");
  const text = node.textContent.trim();
  if (node.dataset.encoding !== "gzip+base64") return JSON.parse(text);
  if (typeof DecompressionStream === "undefined")
    throw new Error("this browser has no DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+)");
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

function options(select, values, all) {
  select.replaceChildren(el("option", {value: "", text: all}));
  for (const [value, label] of values) select.append(el("option", {value: String(value), text: label}));
}

function roundOptions(byRound) {
  return [...byRound.keys()].sort((a, b) => a - b).map((k) => [k, `round ${k} (${byRound.get(k)})`]);
}

function countBy(rows, f) {
  const c = new Map();
  for (const r of rows) c.set(f(r), (c.get(f(r)) || 0) + 1);
  return c;
}

// A browser over `rows` (indices into the data): filters() says which rows pass, render(i) draws one.
class Pager {
  constructor(root, n, filters, render, noun) {
    Object.assign(this, {root, n, filters, render, noun, page: 0, shown: []});  // shown: indices passing the filters
    this.list = $(".rows", root);
    this.status = $(".count", root);
    $(".prev", root).addEventListener("click", () => this.go(this.page - 1));
    $(".next", root).addEventListener("click", () => this.go(this.page + 1));
  }
  update() {
    this.shown = [];
    const keep = this.filters();
    for (let i = 0; i < this.n; i++) if (keep(i)) this.shown.push(i);
    this.go(0);
  }
  go(page) {
    const pages = Math.max(1, Math.ceil(this.shown.length / PAGE));
    this.page = Math.min(Math.max(0, page), pages - 1);
    const from = this.page * PAGE, to = Math.min(this.shown.length, from + PAGE);
    this.list.replaceChildren(...this.shown.slice(from, to).map((i) => this.render(i)));
    this.status.textContent = this.shown.length
      ? `${from + 1}-${to} of ${this.shown.length} ${this.noun} (${this.n} in all); page ${this.page + 1} of ${pages}`
      : `0 of ${this.n} ${this.noun} match`;
    this.root.dataset.matching = String(this.shown.length);
    $(".prev", this.root).disabled = this.page === 0;
    $(".next", this.root).disabled = this.page >= pages - 1;
  }
}

function textMatcher(D) {
  // query -> (text index -> bool), computed once per query over the de-duplicated texts
  let lower = null, lowerQ = null, last = null, hits = null, qhits = null;
  return (q) => {
    if (!q) return null;
    if (!lower) {
      lower = D.texts.map((t) => t.toLowerCase());
      lowerQ = D.problems.map((p) => [p[1], p[4], p[5]].join("\n").toLowerCase());
    }
    if (q !== last) {
      last = q;
      hits = lower.map((t) => t.includes(q));
      qhits = lowerQ.map((t) => t.includes(q));
    }
    return {text: hits, problem: qhits};
  };
}

function withFirstError(text, fe) {
  if (!fe) return [document.createTextNode(text)];
  const [start, end, statement, left, right] = fe;
  const title = `first false statement: ${statement} (left side = ${left}, right side = ${right})`;
  const mark = el("mark", {class: "first-error", title, text: text.slice(start, end)});
  return [text.slice(0, start), mark, text.slice(end)];
}

function pairBrowser(D) {
  const root = $("#pair-browser");
  const P = D.pairs, E = D.enums, match = textMatcher(D);
  const f = {round: $("#pf-round"), origin: $("#pf-origin"), mode: $("#pf-mode"), reason: $("#pf-reason"),
             q: $("#pf-q")};
  const byRound = countBy(P, (p) => D.problems[p[0]][0]);
  options(f.round, roundOptions(byRound), "all rounds");
  const opt = (sel, names, col) => {
    const c = countBy(P, col);
    options(sel, names.map((n, i) => [i, `${n} (${c.get(i) || 0})`]).filter((o) => c.get(o[0])), sel.dataset.all);
  };
  opt(f.origin, E.origin, (p) => D.problems[p[0]][2]);
  opt(f.mode, E.mode, (p) => p[1]);
  opt(f.reason, E.reason, (p) => p[2]);
  const filters = () => {
    const r = f.round.value, o = f.origin.value, m = f.mode.value, why = f.reason.value;
    const hit = match(f.q.value.trim().toLowerCase());
    return (i) => {
      const p = P[i], prob = D.problems[p[0]];
      if (r !== "" && prob[0] !== +r) return false;
      if (o !== "" && prob[2] !== +o) return false;
      if (m !== "" && p[1] !== +m) return false;
      if (why !== "" && p[2] !== +why) return false;
      return !hit || hit.problem[p[0]] || hit.text[p[3]] || hit.text[p[4]];
    };
  };
  const render = (i) => {
    const p = P[i], prob = D.problems[p[0]];
    const [, , , , , , , fe, sc, step, line] = p;
    const meta = [`round ${prob[0]}`, prob[1], E.origin[prob[2]], E.mode[p[1]], `rejected: ${E.reason[p[2]]}`,
                  prob[6] === null ? null : `pass rate ${prob[6]}`, prob[3] === null ? null : `level ${prob[3]}`,
                  step ? "step pair" : null, `pairs.jsonl line ${line}`].filter((x) => x !== null).join(" · ");
    const side = (cls, title, ex, text, f1) => el("div", {class: `side ${cls}`},
      el("h4", {text: `${title} — extracted: ${ex === null ? "(none)" : ex}`}),
      el("pre", {class: `${cls}-text`}, ...withFirstError(D.texts[text], f1)));
    return el("article", {class: "pair", "data-round": prob[0], "data-line": line, "data-pid": prob[1]},
      el("div", {class: "meta", text: meta}),
      el("div", {class: "question", text: prob[4]}),
      el("div", {class: "gold"}, "gold: ", el("code", {text: prob[5]})),
      el("div", {class: "sides"}, side("chosen", "chosen", p[5], p[3], null),
         side("rejected", "rejected", p[6], p[4], fe)),
      sc ? el("div", {class: "steps", text: `statements true/false/unknown: chosen ${sc[0]}/${sc[1]}/${sc[2]}, ` +
                                            `rejected ${sc[3]}/${sc[4]}/${sc[5]}`}) : null,
      fe ? el("div", {class: "steps",
                      text: `first false statement of the rejected: ${fe[2]} (the left side is ${fe[3]})`}) : null);
  };
  const pager = new Pager(root, P.length, filters, render, "pairs");
  let timer = null;
  for (const s of [f.round, f.origin, f.mode, f.reason]) s.addEventListener("change", () => pager.update());
  f.q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => pager.update(), 150); });
  pager.update();
  return {show(round, pid) {
    f.round.value = String(round); f.origin.value = ""; f.mode.value = ""; f.reason.value = ""; f.q.value = pid;
    pager.update();
    root.scrollIntoView();
  }};
}

function posedBrowser(D, pairs) {
  const root = $("#posed-browser");
  const Q = D.posed;
  const f = {round: $("#qf-round"), gave: $("#qf-gave"), q: $("#qf-q")};
  const byRound = countBy(Q, (q) => D.problems[q[0]][0]);
  options(f.round, roundOptions(byRound), "all rounds");
  const filters = () => {
    const r = f.round.value, g = f.gave.value, q = f.q.value.trim().toLowerCase();
    return (i) => {
      const x = Q[i], prob = D.problems[x[0]];
      if (r !== "" && prob[0] !== +r) return false;
      if (g === "yes" && !x[7]) return false;
      if (g === "no" && x[7]) return false;
      return !q || [prob[1], prob[4], x[1]].join("\n").toLowerCase().includes(q);
    };
  };
  const render = (i) => {
    const [pi, program, kind, level, steps, witnesses, solved, npairs, majority, fate] = Q[i];
    const prob = D.problems[pi];
    const pairCell = npairs
      ? el("button", {class: "link", text: `${npairs} pair${npairs > 1 ? "s" : ""}`,
                      onclick: () => pairs.show(prob[0], prob[1])})
      : el("span", {text: "none"});
    return el("tr", {"data-round": prob[0], "data-pid": prob[1]},
      el("td", {class: "num", text: String(prob[0])}),
      el("td", {}, el("code", {text: prob[1]}),
         el("div", {class: "meta", text: `${kind}; level ${level}; ${steps} step(s)`})),
      el("td", {class: "question-cell", text: prob[4]}),
      el("td", {}, el("pre", {text: program || "(no program)"})),
      el("td", {}, el("code", {text: prob[5]})),
      el("td", {}, ...witnesses.map(([w, ok]) => el("div", {class: ok === null ? "" : ok ? "agree" : "disagree",
                                                             text: w}))),
      el("td", {class: "num", text: solved}),
      el("td", {}, el("div", {text: majority})),
      el("td", {}, pairCell, el("div", {class: "meta", text: fate})));
  };
  const pager = new Pager(root, Q.length, filters, render, "posed problems");
  let timer = null;
  for (const s of [f.round, f.gave]) s.addEventListener("change", () => pager.update());
  f.q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => pager.update(), 150); });
  pager.update();
}

(async () => {
  const status = $("#load-status");
  let D;
  try {
    D = await loadData();
  } catch (err) {
    status.textContent = `The browsers could not read the page's data: ${err}`;
    document.body.dataset.ready = "error";
    return;
  }
  const pairs = pairBrowser(D);
  posedBrowser(D, pairs);
  status.textContent = "";
  document.body.dataset.ready = "1";
})();
"""
