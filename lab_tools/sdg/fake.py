"""The scripted fake teacher (``--teacher scripted:`` or ``scripted:PATH``): no model needed.

It answers each SDG stage's prompt with plausible, well-formed output, deterministically (a hash
of the stage, the messages and the seed picks every variation), so tests, the bot and the
end-to-end build can run the whole pipeline in milliseconds. A JSON script can override replies:

```json
{"delay": 0.05,
 "pair_eval": [{"match": "haiku", "reply": "Explanation: off topic.\\nScore: 1"}, {"reply": ["3", "2"]}],
 "question_eval": [{"match": "unsafe", "reply": "no"}],
 "skill_question": [{"match": "garbage", "reply": "__default__"}, {"reply": "???"}]}
```

Keys are stage tags (``skill_question``, ``question_eval``, ``response``, ``pair_eval``,
``knowledge_qa``, ``faithfulness``, ``self_contained``); the first rule whose ``match`` regex is
found in the request's messages (system and user) wins; a list ``reply`` is indexed by the hash; ``__default__``
gives the built-in reply and ``__error__`` a backend error. ``delay``: seconds per request
(to kill a run mid-way in tests). ``concurrent``: true makes the pipeline treat it as a server
backend (each leaf on its own thread). A script of another shape (unknown key, a rule that is not
``{"match": regex, "reply": text | [text, ...]}``, a regex that does not compile) is a clean error
naming the file and the field (:func:`check_script`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.progress import report_tokens
from lab_tools.sdg.teacher import ChatRequest, Completion
from lab_tools.sdg.truncation import fit_requests, mark_cut

_WORDS = ("river", "budget", "garden", "engine", "planet", "recipe", "market", "museum", "forest",
          "letter", "bridge", "harbor", "violin", "glacier", "library", "orchard", "compass",
          "lantern", "satellite", "festival", "volcano", "meadow", "workshop", "telescope",
          "island", "canyon", "theater", "railway", "desert", "castle", "village", "laboratory")
_TEMPLATES = ("Write a short piece about a {a} and a {b}.",
              "Explain how a {a} could help someone visiting a {b}.",
              "Give three facts connecting the {a} to the {b}.",
              "Compare a {a} with a {b} in two sentences.",
              "Describe a day at the {a} near the {b}.",
              "List the steps to plan a trip from the {a} to the {b}.")


def scripted_name(path: str | None) -> str:
    """``scripted`` or ``scripted:<sha256[:12] of the script>`` (the teacher id in cache keys)."""
    if not path:
        return "scripted"
    try:
        return "scripted:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise LabError(f"cannot read the teacher script: {exc}", file=str(path)) from exc


STAGE_TAGS = ("skill_question", "question_eval", "response", "pair_eval", "knowledge_qa",
              "faithfulness", "self_contained", "feedback", "rmsp", "rmsp-user")


def check_script(script, file: str) -> dict[str, list[tuple[re.Pattern | None, str | list[str]]]]:
    """Check a parsed teacher script (see the module doc) and compile its rules:
    ``{tag: [(compiled match or None, reply), ...]}``.

    Raises:
        LabError: the first problem, naming ``file`` and the field (e.g. ``pair_eval.0.match``).
    """
    if not isinstance(script, dict):
        raise LabError(f"a teacher script is a JSON object, got a {type(script).__name__}", file=file)
    rules: dict[str, list] = {}
    for key, value in script.items():
        if key == "delay":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise LabError(f"expected seconds >= 0, got {value!r}", file=file, field="delay")
            continue
        if key == "concurrent":
            if not isinstance(value, bool):
                raise LabError(f"expected true or false, got {value!r}", file=file, field="concurrent")
            continue
        if key not in STAGE_TAGS:
            raise LabError(f"unknown key (known: delay, concurrent, {', '.join(STAGE_TAGS)})",
                           file=file, field=str(key))
        if not isinstance(value, list):
            raise LabError("expected a list of rules {\"match\", \"reply\"}", file=file, field=key)
        rules[key] = []
        for i, rule in enumerate(value):
            where = f"{key}.{i}"
            if not isinstance(rule, dict) or set(rule) - {"match", "reply"}:
                raise LabError("expected a rule {\"match\": regex, \"reply\": text or [text, ...]}",
                               file=file, field=where)
            match = rule.get("match")
            if match is not None and not isinstance(match, str):
                raise LabError(f"expected a regular expression (a string), got {match!r}", file=file,
                               field=f"{where}.match")
            try:
                compiled = re.compile(match, re.IGNORECASE) if match else None
            except re.error as exc:
                raise LabError(f"not a valid regular expression: {exc}", file=file,
                               field=f"{where}.match") from None
            reply = rule.get("reply", "__default__")
            if not (isinstance(reply, str) or (isinstance(reply, list) and reply
                                               and all(isinstance(r, str) for r in reply))):
                raise LabError(f"expected a text or a non-empty list of texts, got {reply!r}", file=file,
                               field=f"{where}.reply")
            rules[key].append((compiled, reply))
    return rules


def _infer_tag(req: ChatRequest) -> str:
    text = " ".join(m["content"] for m in req.messages).lower()
    for needle, tag in (("grade the answer", "pair_eval"), ("grade answers", "pair_eval"),
                        ("supported by the document", "faithfulness"),
                        ("without seeing any document", "self_contained"), ("quiz questions", "knowledge_qa"),
                        ("check requests", "question_eval"), ("new request", "skill_question"),
                        ("new example", "skill_question")):
        if needle in text:
            return tag
    return "response"


class ScriptedTeacher:
    """Deterministic fake teacher; see the module doc for the script format. ``calls`` counts
    requests answered (tests use it to prove that cached leaves cost no requests).
    ``concurrent`` (script key, default false): behave like a server backend, so the pipeline
    runs each leaf on its own thread (tests of that path; replies do not depend on it)."""

    def __init__(self, script: str | None = None):
        self.name = scripted_name(script)
        self.script: dict = {}
        if script:
            try:
                self.script = json.loads(Path(script).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise LabError(f"teacher script is not valid JSON: {exc.msg}", file=str(script),
                               line=exc.lineno) from None
            except (OSError, ValueError) as exc:
                raise LabError(f"cannot read the teacher script: {exc}", file=str(script)) from None
        self.rules = check_script(self.script, str(script))
        self.delay = float(self.script.get("delay", 0) or 0)
        self.concurrent = bool(self.script.get("concurrent", False))
        self.calls = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    max_prompt_tokens = 0  # a cap on prompts (make_teacher sets it; no context of its own), 0 = none

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        requests, cuts = fit_requests(requests, self.count_tokens, cap=self.max_prompt_tokens)
        out = []
        for req in requests:
            with self._lock:
                self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            out.append(self._one(req))
        return mark_cut(out, cuts)

    def _one(self, req: ChatRequest) -> Completion:
        tag = req.tag or _infer_tag(req)
        user = next((m["content"] for m in reversed(req.messages) if m["role"] == "user"), "")
        everything = "\n".join(m["content"] for m in req.messages)
        h = int(hashlib.sha256(json.dumps([tag, req.messages, req.seed]).encode()).hexdigest(), 16)
        text = None
        for match, reply in self.rules.get(tag, []):
            if match is not None and not match.search(everything):
                continue
            text = reply[h % len(reply)] if isinstance(reply, list) else reply
            break
        if text == "__error__":
            return Completion("", error="scripted error")
        if text is None or text == "__default__":
            text = self._default(tag, everything, user, h)
        words = text.split()
        if len(words) > req.max_tokens:  # honour the token bound like a real backend
            text = " ".join(words[:req.max_tokens])
        done = min(len(words), req.max_tokens)
        report_tokens(done)  # progress inside the batch, like a server's completions
        return Completion(text, prompt_tokens=len(user.split()), completion_tokens=done)

    @staticmethod
    def _default(tag: str, everything: str, user: str, h: int) -> str:
        a, b = _WORDS[h % len(_WORDS)], _WORDS[(h // 97) % len(_WORDS)]
        if a == b:
            b = _WORDS[(h // 97 + 1) % len(_WORDS)]
        if tag == "skill_question":  # a numbered list of as many items as the request asks for
            m = re.search(r"Write (?:a new context and )?(\d+) (?:new|questions)", user)
            grounded = "Context:" in everything  # the example turn shows a seed context
            items = []
            for k in range(int(m.group(1)) if m else 1):
                hk = int(hashlib.sha256(f"{h}:{k}".encode()).hexdigest(), 16)
                x, y = _WORDS[hk % len(_WORDS)], _WORDS[(hk // 97) % len(_WORDS)]
                items.append(f"How long is the walk from the {x} to the {y}?" if grounded
                             else _TEMPLATES[(hk // 7) % len(_TEMPLATES)].format(a=x, b=y))
            listed = "\n".join(f"{k + 1}. {item}" for k, item in enumerate(items))
            if grounded:  # one new context, then the questions about it
                return (f"Context: The {a} stands next to the {b}; visitors walk between them in about "
                        f"{h % 50 + 5} minutes and count {h % 9 + 2} signs on the way.\nQuestions:\n{listed}")
            return listed
        if tag == "rmsp-user":  # the simulated user of self-play: a follow-up question of its own
            return f"Thanks. Could you also say how the {a} compares with the {b}?"
        if tag in ("question_eval", "faithfulness", "self_contained"):
            return "yes"
        if tag == "pair_eval":  # LAB figure 4: explanation first, the score on the last line
            return "Explanation: correct.\nScore: 3"  # four words: fits generate.eval_tokens >= 4
        if tag == "knowledge_qa":
            m = re.search(r"Document:\s*(.*?)\n\s*\nWrite one question", user, re.DOTALL)
            doc = (m.group(1) if m else user).strip()
            sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc) if len(s.split()) >= 4]
            if not sentences:
                return "I cannot find a fact here."
            i = h % len(sentences)
            topic = " ".join(re.findall(r"[A-Za-z]+", sentences[i])[:4])
            answer = sentences[i] if (h // 5) % 2 else " ".join(sentences[i:] + sentences[:i])
            return f"Question: What is known about {topic} ({h % 1000})?\nAnswer: {answer}"
        context = user.rsplit("\n\n", 1)[1].strip() if "\n\n" in user else ""
        if context.endswith("Assistant:"):  # a raw Human/Assistant dialogue (feedback.raw): no context
            context = ""
        if context:  # a grounded request (question, then its context): answer from the context
            first = re.split(r"(?<=[.!?])\s+", context)[0]
            return f"From the text: {first}"
        n = 1 + h % 4  # response: one to four sentences, each about other things (no loop)
        verbs = ("borders", "supplies", "outlasts", "mirrors")
        return " ".join(f"The {_WORDS[(h + 3 * k) % len(_WORDS)]} {verbs[k]} the "
                        f"{_WORDS[(h // 97 + 5 * k + 1) % len(_WORDS)]} in detail {k + 1}." for k in range(n))
