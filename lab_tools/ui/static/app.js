// lab ui: the page. Plain DOM, no framework. Every edit is sent to /api/check (the server runs
// the validator and the license check on the YAML the page would write); findings are shown
// next to the field they name and on their line of the YAML.
"use strict";

const TOKEN = document.querySelector('meta[name="lab-token"]').content;
const $ = (id) => document.getElementById(id);
const S = { meta: null, path: null, kind: null, form: null, findings: [], seq: 0, timer: null, poll: null, dirty: false };
// unsaved edits are never dropped silently: switching leaves or closing the tab asks first
const keepEdits = () => !S.dirty || window.confirm(`${S.path} has unsaved edits; discard them?`);
// a count and its noun in the right number: plural(1, "error") is "1 error", plural(2, "error") "2 errors"
const plural = (n, noun) => `${n} ${n === 1 ? noun : noun + "s"}`;
const counts = (errors, warnings) => `${plural(errors, "error")}, ${plural(warnings, "warning")}`;

async function api(method, url, body) {
  const opts = { method, headers: { "X-Lab-Token": TOKEN } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const resp = await fetch(url, opts);
  let data = {};
  try { data = await resp.json(); } catch (e) { data = { error: resp.statusText }; }
  if (!resp.ok) { const err = new Error(data.error || resp.statusText); err.field = data.field; throw err; }
  return data;
}

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
  return node;
}

const words = (s) => (s || "").split(/\s+/).filter(Boolean).length;
const family = () => (S.kind === "knowledge" ? "knowledge" : "skills");
function bounds(name) {
  const b = (S.meta.bounds[family()] || {})[String(S.form.version)] || (S.meta.bounds[family()] || {})["3"];
  return (b && b[name]) || [1, null];
}

// ---- the tree ---------------------------------------------------------------------------------
async function loadTree() {
  const box = $("tree");
  try {
    const data = await api("GET", "/api/tree");
    const root = {};
    for (const leaf of data.leaves) {
      let node = root;
      const parts = leaf.path.split("/");
      parts.slice(0, -1).forEach((p) => { node[p] = node[p] || {}; node = node[p]; });
      node[parts[parts.length - 1]] = { __leaf: leaf };
    }
    const render = (node) => el("ul", {}, ...Object.keys(node).sort().map((name) => {
      const child = node[name];
      if (child.__leaf) {
        const l = child.__leaf;
        const title = counts(l.errors, l.warnings);
        return el("li", {}, el("button", { class: "leaf", type: "button", "data-path": l.path, title,
          onclick: () => openLeaf(l.path) }, name), el("span", { class: `badge ${l.status}`, title }, l.status));
      }
      return el("li", {}, el("span", { class: "folder" }, name + "/"), render(child));
    }));
    box.replaceChildren(render(root));
    for (const o of data.other) {
      box.append(el("div", { class: `finding ${o.status === "errors" ? "error" : "warning"}` },
        `${o.file}: ${counts(o.errors, o.warnings)} (not a leaf)`));
    }
  } catch (e) { box.textContent = "could not load the taxonomy: " + e.message; }
}

// ---- opening a leaf ---------------------------------------------------------------------------
function show(data) {
  S.path = data.path; S.kind = data.kind; S.form = data.form; S.dirty = false;
  $("editor").hidden = false; $("yaml-pane").hidden = false;
  $("leaf-title").textContent = data.path;
  $("leaf-kind").textContent = { knowledge: "Knowledge leaf", foundational_skills: "Foundational skill",
    compositional_skills: "Compositional skill" }[data.kind];
  const notes = [];
  if (data.dropped && data.dropped.length) notes.push(el("div", { class: "finding warning" },
    "Fields the form does not edit (saving removes them): " + data.dropped.join(", ")));
  if (data.reformatted) notes.push(el("div", { class: "finding info" },
    "Saving rewrites this file in the taxonomy's YAML style (see the YAML on the right)."));
  $("notes").replaceChildren(...notes);
  $("branch").value = "leaf/" + data.path.split("/").slice(-1)[0];
  $("commit-message").value = (data.dropped ? "Update " : "Add ") + data.path;
  $("save-result").replaceChildren(); $("preview-body").replaceChildren(); $("preview-progress").textContent = "";
  renderForm();
  showChecked(data);
}

async function openLeaf(path) {
  if (!keepEdits()) return;
  try { show(await api("GET", "/api/leaf?path=" + encodeURIComponent(path))); }
  catch (e) { alertBox($("new-error"), e.message); }
}

async function newLeaf() {
  const path = $("new-path").value.trim();
  $("new-error").replaceChildren();
  if (!keepEdits()) return;
  try { const data = await api("GET", "/api/new?path=" + encodeURIComponent(path)); data.dropped = null; show(data); }
  catch (e) { alertBox($("new-error"), e.message); }
}

function alertBox(box, message, cls = "error") { box.replaceChildren(el("div", { class: `finding ${cls}` }, message)); }

// ---- the form ---------------------------------------------------------------------------------
function getAt(path) { return path.split(".").reduce((o, k) => (o == null ? o : o[k]), S.form); }
function setAt(path, value) {
  const keys = path.split("."); const last = keys.pop();
  keys.reduce((o, k) => o[k], S.form)[last] = value;
}

function textField(path, label, opts = {}) {
  const value = getAt(path) || "";
  const input = opts.multiline
    ? el("textarea", { name: path, id: "f-" + path,
      rows: Math.min(12, Math.max(opts.rows || 2, value.replace(/\n$/, "").split("\n").length)) }, value)
    : el("input", { name: path, id: "f-" + path, value });
  input.value = value;
  input.addEventListener("input", () => { setAt(path, input.value); updateCounters(); scheduleCheck(); });
  return el("div", { class: "field", "data-field": path }, el("label", { for: "f-" + path }, label), input,
    opts.counter ? el("span", { class: "counter", "data-count": path, "data-limit": opts.counter }) : null,
    el("div", { class: "msgs" }));
}

function listButtons(list, min, max, make, label) {
  return el("button", { type: "button", class: "add", disabled: max !== null && list.length >= max,
    onclick: () => { list.push(make()); renderForm(); scheduleCheck(); } }, "+ " + label);
}
function removeButton(list, i, min, label) {
  return el("button", { type: "button", class: "remove", disabled: list.length <= min, title: `at least ${min}`,
    onclick: () => { list.splice(i, 1); renderForm(); scheduleCheck(); } }, "remove " + label);
}

function renderForm() {
  const f = S.form; const form = $("leaf-form"); const knowledge = S.kind === "knowledge";
  const parts = [textField("created_by", "created_by (your GitHub user name)")];
  if (knowledge) {
    parts.push(textField("domain", "domain"), textField("document_outline", "document_outline", { multiline: true }));
  } else {
    parts.push(textField("task_description", "task_description", { multiline: true }));
  }
  const [exMin, exMax] = bounds("examples");
  const exBox = el("div", { class: "field", "data-field": "seed_examples" },
    el("h2", {}, `Seed examples (${f.seed_examples.length}; at least ${exMin}${exMax ? `, at most ${exMax}` : ""})`),
    el("div", { class: "msgs" }));
  f.seed_examples.forEach((ex, i) => {
    const p = `seed_examples.${i}`;
    const box = el("div", { class: "group field", "data-field": p },
      el("div", { class: "head" }, `Example ${i + 1}`, removeButton(f.seed_examples, i, exMin, "example")),
      el("div", { class: "msgs" }));
    if (knowledge) {
      box.append(textField(p + ".context", "context (an excerpt of the document)", { multiline: true, rows: 5, counter: "context" }));
      const [qMin, qMax] = bounds("qas");
      ex.questions_and_answers.forEach((qa, j) => {
        const q = `${p}.questions_and_answers.${j}`;
        box.append(el("div", { class: "group field", "data-field": q },
          el("div", { class: "head" }, `Question ${j + 1}`, removeButton(ex.questions_and_answers, j, qMin, "question")),
          el("div", { class: "msgs" }),
          textField(q + ".question", "question", { multiline: true }),
          textField(q + ".answer", "answer", { multiline: true }),
          el("span", { class: "counter", "data-qa": q, "data-limit": "qa" })));
      });
      box.append(listButtons(ex.questions_and_answers, qMin, qMax, () => ({ question: "", answer: "" }), "question"));
    } else {
      if (S.kind === "compositional_skills" || ex.context) {
        box.append(textField(p + ".context", "context (optional: makes a grounded skill)", { multiline: true, counter: "context" }));
      }
      box.append(textField(p + ".question", "question", { multiline: true }), textField(p + ".answer", "answer", { multiline: true }),
        el("span", { class: "counter", "data-qa": p, "data-limit": "qa" }));
    }
    exBox.append(box);
  });
  exBox.append(listButtons(f.seed_examples, exMin, exMax, () => (knowledge
    ? { context: "", questions_and_answers: Array.from({ length: bounds("qas")[0] }, () => ({ question: "", answer: "" })) }
    : { context: "", question: "", answer: "" }), "example"));
  parts.push(exBox);
  if (knowledge) {
    const d = f.document; const [pMin, pMax] = bounds("patterns");
    const docBox = el("div", { class: "group field", "data-field": "document" }, el("div", { class: "head" }, "document"),
      el("div", { class: "msgs" }),
      textField("document.repo", "repo (https:// URL, or a path relative to the taxonomy root)"),
      textField("document.commit", "commit (the full commit id holding the documents)"));
    const patBox = el("div", { class: "field", "data-field": "document.patterns" }, el("label", {}, "patterns (globs)"), el("div", { class: "msgs" }));
    d.patterns.forEach((_, k) => patBox.append(textField(`document.patterns.${k}`, `pattern ${k + 1}`),
      removeButton(d.patterns, k, pMin, "pattern")));
    patBox.append(listButtons(d.patterns, pMin, pMax, () => "", "pattern"));
    docBox.append(patBox);
    parts.push(docBox);
  }
  parts.push(attributionBox());
  form.replaceChildren(...parts);
  updateCounters();
  placeFindings();
}

function attributionBox() {
  const works = S.form.attribution;
  const box = el("div", { class: "field", "data-field": "attribution" },
    el("h2", {}, "Attribution (attribution.txt)"), el("div", { class: "msgs" }));
  works.forEach((w, i) => {
    const p = `attribution.${i}`;
    const select = el("select", { name: p + ".license", id: "f-" + p + ".license" }, el("option", { value: "" }, "choose a license"));
    const known = S.meta.licenses.slice();
    if (w.license && !known.includes(w.license)) known.push(w.license);
    for (const lic of known) {
      select.append(el("option", { value: lic }, lic + (S.meta.licenses.includes(lic) ? "" : " (not in the allowlist)")));
    }
    select.value = w.license || "";
    select.addEventListener("change", () => { w.license = select.value; scheduleCheck(); });
    box.append(el("div", { class: "group field", "data-field": p },
      el("div", { class: "head" }, `Work ${i + 1}`, works.length > 1 ? removeButton(works, i, 1, "work") : null),
      el("div", { class: "msgs" }),
      textField(p + ".title", "Title of work"), textField(p + ".link", "Link to work"),
      textField(p + ".revision", "Revision (optional)"),
      el("div", { class: "field", "data-field": p + ".license" }, el("label", { for: "f-" + p + ".license" }, "License of the work (SPDX, from lab.yaml licenses.allowlist)"),
        select, el("div", { class: "msgs" })),
      textField(p + ".creators", "Creator names")));
  });
  box.append(listButtons(works, 1, null, () => ({ title: "", link: "", revision: "", license: "", creators: "" }), "work"));
  return box;
}

function updateCounters() {
  const limits = S.meta.limits;
  for (const c of document.querySelectorAll("[data-count]")) {
    const n = words(getAt(c.dataset.count)); const lim = limits[c.dataset.limit];
    c.textContent = `${n} / ${lim} words`; c.classList.toggle("over", n > lim);
  }
  for (const c of document.querySelectorAll("[data-qa]")) {
    const o = getAt(c.dataset.qa) || {}; const n = words(o.question) + words(o.answer); const lim = limits.qa;
    c.textContent = `question + answer: ${n} / ${lim} words`; c.classList.toggle("over", n > lim);
  }
}

// ---- live checks ------------------------------------------------------------------------------
function scheduleCheck() { S.dirty = true; clearTimeout(S.timer); S.timer = setTimeout(runCheck, 250); }

async function runCheck() {
  const seq = ++S.seq;
  $("status").textContent = "checking…";
  try {
    const data = await api("POST", "/api/check", { path: S.path, form: S.form });
    if (seq === S.seq) showChecked(data);
  } catch (e) { if (seq === S.seq) { $("status").textContent = e.message; $("status").className = "bad"; } }
}

function renderText(pre, text, findings) {
  const marks = {};
  for (const f of findings) if (f.severity === "error" || !marks[f.line]) marks[f.line] = f.severity;
  const lines = text.replace(/\n$/, "").split("\n");
  pre.replaceChildren(...(text ? lines : []).map((line, i) =>
    el("span", { class: "ln" + (marks[i + 1] ? ` hl-${marks[i + 1]}` : ""), "data-line": String(i + 1) }, line || " ")));
}

function showChecked(data) {
  S.findings = data.findings;
  renderText($("yaml"), data.yaml, data.findings.filter((f) => f.file === "qna.yaml"));
  renderText($("attr"), data.attribution, data.findings.filter((f) => f.file === "attribution.txt"));
  const errors = data.findings.filter((f) => f.severity === "error").length;
  const warnings = data.findings.length - errors;
  $("status").textContent = errors || warnings ? counts(errors, warnings) : "valid: no findings";
  $("status").className = errors ? "bad" : "ok";
  placeFindings();
}

function placeFindings() {
  for (const box of document.querySelectorAll("#leaf-form .msgs, #general")) box.replaceChildren();
  for (const f of S.findings || []) {
    let target = null; const parts = f.field ? f.field.split(".") : [];
    while (parts.length && !target) {
      target = document.querySelector(`#leaf-form [data-field="${CSS.escape(parts.join("."))}"] > .msgs`);
      parts.pop();
    }
    const where = f.file === "qna.yaml" || f.file === "attribution.txt" ? `${f.file} line ${f.line}` : f.file;
    const msg = el("div", { class: `finding ${f.severity}`, "data-finding": f.field },
      (f.field ? f.field + ": " : "") + f.message + " ",
      el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); jumpTo(f); } }, `(${where})`));
    (target || $("general")).append(msg);
  }
}

function jumpTo(f) {
  const pre = f.file === "attribution.txt" ? $("attr") : $("yaml");
  const line = pre.querySelector(`[data-line="${f.line}"]`);
  if (line) line.scrollIntoView({ block: "center" });
}

// ---- save and preview -------------------------------------------------------------------------
async function save() {
  const errors = (S.findings || []).filter((f) => f.severity === "error").length;
  if (errors && !window.confirm(`This leaf has ${plural(errors, "error")}; save it anyway?`)) return;
  const body = { path: S.path, form: S.form };
  if ($("do-commit").checked) body.commit = { branch: $("branch").value, message: $("commit-message").value };
  const box = $("save-result");
  try {
    const r = await api("POST", "/api/save", body);
    S.dirty = false;
    const kids = [el("div", { class: "finding info" }, r.written.length ? "Saved " + r.written.join(", ") : "Nothing changed on disk")];
    if (r.git) kids.push(el("div", { class: "finding info" }, `Committed ${r.git.commit.slice(0, 12)} on ${r.git.branch}. Next:`),
      el("pre", {}, r.next.join("\n")));
    if (r.git_error) kids.push(el("div", { class: "finding error" }, "Not committed: " + r.git_error));
    box.replaceChildren(...kids);
    loadTree();
  } catch (e) { alertBox(box, "Not saved: " + e.message); }
}

async function preview() {
  clearInterval(S.poll);
  const prog = $("preview-progress"); const body = $("preview-body");
  body.replaceChildren(); prog.textContent = "starting…"; $("preview-btn").disabled = true;
  try {
    const job = await api("POST", "/api/preview", { path: S.path, form: S.form });
    S.poll = setInterval(async () => {
      let j;
      try { j = await api("GET", "/api/preview/" + job.id); } catch (e) { prog.textContent = e.message; clearInterval(S.poll); $("preview-btn").disabled = false; return; }
      prog.replaceChildren(el("progress", {}), ` ${j.state} · ${j.stage} · ${plural(j.requests, "teacher request")} answered · ${j.seconds} s`);
      if (j.state === "done" || j.state === "failed") {
        clearInterval(S.poll); $("preview-btn").disabled = false;
        prog.textContent = j.state === "done" ? `done in ${j.seconds} s (${plural(j.requests, "teacher request")})${j.summary ? " · " + j.summary : ""}` : "preview failed";
        if (j.state === "done") body.innerHTML = j.html;  // rendered by the bot's escaping renderer
        else alertBox(body, j.error);
      }
    }, 400);
  } catch (e) { prog.textContent = e.message; $("preview-btn").disabled = false; }
}

async function start() {
  S.meta = await api("GET", "/api/meta");
  $("root-info").textContent = S.meta.root;
  $("teacher").textContent = S.meta.teacher;
  $("new-btn").addEventListener("click", newLeaf);
  $("new-path").addEventListener("keydown", (e) => { if (e.key === "Enter") newLeaf(); });
  $("tree-refresh").addEventListener("click", loadTree);
  $("save-btn").addEventListener("click", save);
  $("preview-btn").addEventListener("click", preview);
  $("do-commit").addEventListener("change", () => { $("commit-fields").hidden = !$("do-commit").checked; });
  window.addEventListener("beforeunload", (ev) => { if (S.dirty) ev.preventDefault(); });
  loadTree();
}

document.addEventListener("DOMContentLoaded", start);
