"""The preview comment: markdown built from a :class:`Preview`, with everything from the PR escaped.

Everything that comes from a pull request (leaf paths, seed text, generated text, validator
messages that quote the file) is untrusted. It is escaped by the project's one rule,
:mod:`lab_tools.markdown` (the model and dataset cards use the same): :func:`inline` for a line
of prose (also inside ``<summary>``), :func:`code_block` for samples.
The comment body is kept under GitHub's limit of 65,536 characters (:data:`GITHUB_LIMIT`) by
dropping generated samples leaf by leaf, with a note saying what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab_tools.errors import plural
from lab_tools.markdown import ZWJ, clip, code_block, inline, neutralize  # noqa: F401 (re-exported)
from lab_tools.sdg.datacard import scores_of
from lab_tools.sdg.phases import leaf_quality, quality_line

#: hidden marker that identifies the bot's one sticky comment on a pull request
MARKER = "<!-- lab-tools:preview -->"
#: GitHub's maximum issue-comment body length, in characters
GITHUB_LIMIT = 65536


def details(summary_html: str, body_md: str, open_: bool = False) -> str:
    """A collapsible section. ``summary_html`` must already be escaped (see :func:`inline`).

    Blank lines around the body let GitHub render markdown inside the HTML block."""
    return (f"<details{' open' if open_ else ''}>\n<summary>{summary_html}</summary>\n\n"
            f"{body_md}\n\n</details>")


@dataclass
class FindingView:
    """A validation or license finding as shown: ``file`` relative path, 1-based ``line``
    (0 = unknown), ``field`` dotted path, ``message``, ``severity`` (``error``|``warning``)."""
    file: str
    line: int
    field: str
    message: str
    severity: str = "error"


@dataclass
class LeafView:
    """One changed leaf in the comment.

    ``stats``: counts from generation (``generated``, ``kept``, ``unused``, ``cached``, and
    ``rejected``/``malformed``/``errors`` -> {stage: n});
    ``samples``: generated samples ``{"messages": [...], "metadata": {"score": ...}}``;
    ``seconds``: generation time for this leaf; ``skipped``: why generation did not run;
    ``error``: why generation failed for this leaf (the run went on with the others);
    ``rejected``: filtered-out candidates ``{"stage", "reason", "question"?, "answer"?, "raw"?}``;
    ``comparison``: one synthetic comparison (a ``comparisons.jsonl`` row: ``prompt``/``chosen``/
    ``rejected`` messages and ``metadata`` with the two configurations) when feedback is enabled;
    ``attempts``: generation rounds it took (:mod:`lab_tools.bot.bounded`); ``shortfall``: why it
    holds fewer samples than the preview announces (filters and their counts), else None."""
    path: str
    kind: str = ""
    findings: list[FindingView] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    seconds: float | None = None
    skipped: str | None = None
    error: str | None = None
    rejected: list[dict] = field(default_factory=list)
    comparison: dict | None = None
    attempts: int = 0
    shortfall: str | None = None

    @property
    def errors(self) -> int:
        """Number of error findings (warnings do not fail the preview)."""
        return sum(1 for f in self.findings if f.severity == "error")


@dataclass
class Preview:
    """Everything the comment shows. ``mode``: ``preview`` (with generation) or ``validate``;
    ``failure``: what failed (stage and message) when the run itself broke, else None;
    ``seconds``: wall time of the whole run; ``skipped_leaves``: changed leaves not generated
    (over ``bot.max_leaves``); ``budget_cut``: what the time budget stopped (leaf and stage);
    ``truncated_prompts``: teacher prompts cut to fit (``bot.max_prompt_tokens`` or the context)."""
    sha: str
    base: str | None = None
    mode: str = "preview"
    teacher: str = ""
    judge: str = ""
    samples_per_leaf: int = 0
    leaves: list[LeafView] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failure: str | None = None
    seconds: float = 0.0
    run_url: str | None = None
    skipped_leaves: list[str] = field(default_factory=list)
    budget_cut: list[str] = field(default_factory=list)
    truncated_prompts: int = 0

    @property
    def ok(self) -> bool:
        """True when the run did not fail and no leaf has an error finding."""
        return self.failure is None and not any(leaf.errors or leaf.error for leaf in self.leaves)


def _finding_line(f: FindingView) -> str:
    where = f"{f.file}:{f.line}" if f.line else f.file
    fld = f" <code>{inline(f.field, 120)}</code>" if f.field else ""
    icon = "❌" if f.severity == "error" else "⚠️"
    return f"- {icon} <code>{inline(where, 200)}</code>{fld}: {inline(f.message, 500)}"


def _stats_line(leaf: LeafView) -> str:
    s = leaf.stats or {}
    parts = [f"generated **{int(s.get('generated', 0))}**", f"kept **{int(s.get('kept', 0))}**"]
    if s.get("unused"):
        parts.append(f"unused (beyond the sample count): {int(s['unused'])}")
    for key, label in (("rejected", "filtered out"), ("malformed", "malformed"), ("errors", "teacher errors")):
        counts = s.get(key) or {}
        if counts:
            parts.append(f"{label}: " + ", ".join(f"{inline(k, 40)} {int(v)}" for k, v in counts.items()))
    if leaf.attempts > 1:
        parts.append(f"{leaf.attempts} attempts")
    if s.get("cached"):
        parts.append("from cache")
    elif leaf.seconds is not None:
        parts.append(f"{leaf.seconds:.1f} s")
    line = " · ".join(parts)
    if leaf.shortfall:  # fewer than announced: why, filter by filter, next to the count
        line += f"\n\n⚠️ **Short:** {inline(leaf.shortfall, 1000)}"
    return line


def _score(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return inline(value, 20)


def _sample_md(i: int, sample: dict, text_limit: int) -> str:
    msgs = sample.get("messages") or []
    meta = sample.get("metadata") or {}
    q = next((m.get("content", "") for m in msgs if m.get("role") == "user"), "")
    a = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "assistant"), "")
    scores = scores_of(meta)  # the phase files' list of {name, value} or the cache's mapping
    if meta.get("score") is not None:
        scores.setdefault("score", meta["score"])
    phase = meta.get("phase")
    # scores of None are model judges that did not run (generate.model_judges: false)
    shown = ", ".join(f"{inline(k, 30)} {_score(v)}" for k, v in scores.items() if v is not None)
    if scores and not shown:
        shown = "off"
    label = (f"sample {i}" + (f" · {inline(phase, 10)}" if phase else "")
             + (f" · judge: {shown}" if shown else ""))
    body = (f"**Question**\n\n{code_block(q, limit=text_limit)}\n\n"
            f"**Answer**\n\n{code_block(a, limit=text_limit)}")
    return details(label, body)


def _rejected_md(rejected: list[dict], limit: int, text_limit: int) -> str:
    items = []
    for r in rejected[:limit]:
        parts = [f"**{inline(r.get('stage', '?'), 40)}**: {inline(r.get('reason', ''), 300)}"]
        for key in ("question", "answer", "raw"):
            if r.get(key):
                parts.append(f"{key}:\n\n{code_block(r[key], limit=text_limit)}")
        items.append("\n\n".join(parts))
    more = f"\n\n…and {len(rejected) - limit} more." if len(rejected) > limit else ""
    summary = (f"filtered out: {len(rejected)}"
               + (f" (the first {limit} shown)" if len(rejected) > limit else ""))
    return details(summary, "\n\n---\n\n".join(items) + more)


def _comparison_md(row: dict, text_limit: int) -> str:
    """One synthetic comparison: the prompt, the chosen and the rejected response, each with the
    configuration (and rubric rank) that produced it; everything escaped."""
    md = row.get("metadata") or {}
    ranks = md.get("ranks") or {}

    def content(key):
        return next((m.get("content", "") for m in row.get(key) or []), "")

    def label(which):
        return f"{inline(md.get(which + '_config', '?'), 60)} (rank {inline(ranks.get(which, '?'), 5)})"

    body = (f"**Prompt**\n\n{code_block(content('prompt'), limit=text_limit)}\n\n"
            f"**Chosen**: {label('chosen')}\n\n{code_block(content('chosen'), limit=text_limit)}\n\n"
            f"**Rejected**: {label('rejected')}\n\n{code_block(content('rejected'), limit=text_limit)}")
    return details(f"synthetic comparison · {label('chosen')} &gt; {label('rejected')}", body)


def render_leaf(leaf: LeafView, *, max_samples: int | None = None, text_limit: int = 2000,
                max_findings: int = 50, max_rejected: int = 3) -> str:
    """Markdown for one leaf: heading, findings with file:line, stats, samples (collapsed).

    ``max_samples``: samples shown (None = all; 0 also hides filtered-out candidates);
    ``text_limit``: characters per question/answer; ``max_rejected``: filtered-out candidates shown."""
    none_kept = bool(leaf.stats) and not leaf.stats.get("kept") and not leaf.error
    status = ("❌" if leaf.errors or leaf.error else "⏭️" if leaf.skipped else "⚠️" if none_kept else "✅")
    kind = f" ({inline(leaf.kind, 40)})" if leaf.kind else ""
    out = [f"### {status} <code>{inline(leaf.path, 200)}</code>{kind}"]
    if leaf.findings:
        shown = leaf.findings[:max_findings]
        out.append("\n".join(_finding_line(f) for f in shown))
        if len(leaf.findings) > len(shown):
            out.append(f"… and {plural(len(leaf.findings) - len(shown), 'more finding')}.")
    if leaf.error:
        out.append(f"**Generation failed:** {inline(leaf.error, 1000)}")
    if leaf.skipped:
        out.append(f"Generation skipped: {inline(leaf.skipped, 300)}")
    elif leaf.stats or leaf.samples:
        out.append(_stats_line(leaf))
        if leaf.samples or leaf.rejected:  # the dataset card's per-leaf quality line
            out.append("Quality: " + quality_line(leaf_quality(leaf.samples, leaf.rejected),
                                                  esc=lambda t: inline(t, 80)))
        if none_kept:
            out.append("No candidate survived the filters at this sample count (see why below). The run "
                       "after merge generates many more; if this persists, make the seed examples more "
                       "varied and self-contained.")
    samples = leaf.samples if max_samples is None else leaf.samples[:max_samples]
    if samples:
        out.append("\n\n".join(_sample_md(i + 1, s, text_limit) for i, s in enumerate(samples)))
    if leaf.comparison and max_samples != 0:
        out.append(_comparison_md(leaf.comparison, min(text_limit, 1500)))
    if leaf.rejected and max_samples != 0:
        out.append(_rejected_md(leaf.rejected, max_rejected, min(text_limit, 800)))
    if len(samples) < len(leaf.samples):
        out.append(f"_{plural(len(leaf.samples) - len(samples), 'sample')} of this leaf not shown (comment size limit)._")
    return "\n\n".join(out)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _header(p: Preview) -> str:
    verdict = ("❌ **failed**" if p.failure else
               "❌ **errors found**" if not p.ok else "✅ **looks good**")
    title = "lab preview" if p.mode == "preview" else "lab validate"
    lines = [MARKER, f"## {title}: {verdict}", ""]
    facts = [f"commit <code>{inline(p.sha[:12], 12)}</code>"]
    if p.base:
        facts.append(f"base <code>{inline(p.base, 80)}</code>")
    if p.mode == "preview" and p.teacher:
        facts.append(f"teacher <code>{inline(p.teacher, 120)}</code>")
        if p.judge and p.judge != p.teacher:
            facts.append(f"judge <code>{inline(p.judge, 120)}</code>")
        facts.append(f"{plural(p.samples_per_leaf, 'sample')} per leaf")
    facts.append(f"{p.seconds:.1f} s")
    lines.append(" · ".join(facts))
    if p.failure:
        lines += ["", f"**What failed:** {inline(p.failure, 1500)}"]
    n_err = sum(leaf.errors for leaf in p.leaves)
    n_gen = sum(1 for leaf in p.leaves if leaf.error)
    if p.leaves:
        lines += ["", f"{_n(len(p.leaves), 'changed leaf', 'changed leaves')}, {_n(n_err, 'error')}"
                  + (f", generation failed for {n_gen}." if n_gen else ".")]
    elif not p.failure:
        lines += ["", "No leaf changed in this pull request."]
    if p.deleted:
        lines += ["", "Deleted leaves: " + ", ".join(f"<code>{inline(d, 200)}</code>" for d in p.deleted[:50])]
    if p.skipped_leaves:  # bounded work per pull request (bot.max_leaves)
        shown = ", ".join(f"<code>{inline(d, 200)}</code>" for d in p.skipped_leaves[:50])
        more = f" and {len(p.skipped_leaves) - 50} more" if len(p.skipped_leaves) > 50 else ""
        lines += ["", f"⏭️ Not generated ({_n(len(p.skipped_leaves), 'leaf', 'leaves')} over "
                  f"<code>bot.max_leaves</code>, validated all the same): {shown}{more}."]
    if p.budget_cut:
        lines += ["", "⏱️ The preview's time budget (<code>bot.time_budget</code>) stopped: "
                  + "; ".join(inline(c, 300) for c in p.budget_cut[:50]) + "."]
    if p.truncated_prompts:
        lines += ["", f"✂️ {_n(p.truncated_prompts, 'teacher prompt')} cut to fit "
                  "(<code>bot.max_prompt_tokens</code> or the model's context)."]
    return "\n".join(lines)


def _footer(p: Preview) -> str:
    run = f" · [workflow run]({p.run_url})" if p.run_url else ""
    return ("<sub>Generated by <code>lab bot</code> with a small sample count; the run after merge "
            "uses the full settings. Comment <code>/lab preview</code> or <code>/lab validate</code> "
            f"to run again (write access needed){run}.</sub>")


def render_comment(p: Preview, limit: int = GITHUB_LIMIT) -> str:
    """The full comment body (starts with :data:`MARKER`), at most ``limit`` characters.

    When too long, generated samples are left out leaf by leaf (then whole leaves are reduced
    to one line) and a note says how many characters were left out."""
    head, foot = _header(p), _footer(p)
    full = [render_leaf(leaf) for leaf in p.leaves]
    body = "\n\n".join([head, *full, foot])
    if len(body) <= limit:
        return body
    budget = limit - len(head) - len(foot) - 400  # 400: room for the truncation note
    parts: list[str] = []
    for i, leaf in enumerate(p.leaves):
        reserve = min(len(p.leaves) - i - 1, 200) * 160  # room for one-liners of the leaves after it
        one_line = f"### <code>{inline(leaf.path, 120)}</code>: {plural(leaf.errors, 'error')} (details left out)"
        options = [full[i], render_leaf(leaf, max_samples=0, text_limit=500, max_findings=20), one_line]
        chosen = next((c for c in options if len(c) + 2 + reserve <= budget), None)
        if chosen is None and len(one_line) + 2 <= budget:
            chosen = one_line
        if chosen is None:
            parts.append(f"… {plural(len(p.leaves) - i, 'more leaf')} not shown.")
            break
        parts.append(chosen)
        budget -= len(chosen) + 2
    shown = "\n\n".join([head, *parts])
    left_out = len(body) - len(shown) - len(foot)
    note = (f"> [!NOTE]\n> This comment was truncated to stay under GitHub's {limit:,}-character "
            f"limit: about {max(left_out, 0):,} characters of generated samples and details were "
            "left out. Run `lab generate` on these leaves locally to see everything.")
    out = "\n\n".join([shown, note, foot])
    return out if len(out) <= limit else out[: limit - 20] + "\n\n(truncated)"
