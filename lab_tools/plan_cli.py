"""``lab build --plan`` / ``lab train --plan`` on the command line: the ``--plan``, ``--json`` and
``--gpu-memory`` options both commands declare, and the plan of :func:`lab_tools.plan.make_plan`
printed as text (one block per stage) or JSON."""

from __future__ import annotations

import json

import click

from lab_tools.plan import make_plan
from lab_tools.train.plan import GiB


def render(plan: dict) -> str:
    """The plan as text: one block per stage (models, components in GiB, verdict)."""
    g = plan["gpu_memory_gib"]
    lines = [f"{plan['command']} --plan, preset {plan['preset']}: student {plan['student']['path']} "
             f"({plan['student']['source']}), teacher {plan['teacher']['path'] or '-'} "
             f"({plan['teacher']['engine']}, {plan['teacher']['source']}); {g:g} GiB per GPU", ""]
    for st in plan["stages"]:
        verdict = "fits" if st["fits"] else "DOES NOT FIT"
        need = f", fits on {st['min_gpus']}" if st["min_gpus"] and st["min_gpus"] != st["gpus"] else ""
        if not st["per_gpu"]:  # nothing on these GPUs: a remote teacher, or a stage the build refuses
            lines += [f"{st['stage']}: {'nothing on these GPUs' if st['fits'] else 'NOT RUN'}"]
            lines += [f"  note: {n}" for n in st["notes"]]
            continue
        lines.append(f"{st['stage']}: {st['peak_gib']:.1f} GiB per GPU on {st['gpus']} GPU(s): {verdict}{need}")
        for m in st["models"]:
            tr = f", trainable {m['trainable'] / 1e9:.3g}B" if m["trainable"] is not None else ""
            lines.append(f"  {m['role']}: {m['model']} {m['params'] / 1e9:.3g}B params, {m['dtype']}, {m['mode']}{tr}")
        lines.append("  " + ", ".join(f"{k} {v / GiB:.1f}" for k, v in st["per_gpu"].items() if v))
        lines += [f"  note: {n}" for n in st["notes"]]
    gpus = plan["gpus"]
    lines += ["", f"GPUs: training node {gpus['training_node']}, teacher server {gpus['teacher_server']}; "
              f"{'every stage fits' if plan['fits'] else 'some stage does not fit'}"]
    lines += [f"not run: {x}" for x in plan["not_run"]]
    return "\n".join(lines)


def plan_options(what: str):
    """The ``--plan``, ``--json`` and ``--gpu-memory`` options of ``lab build`` and ``lab train``
    (one declaration for both); ``what``: the units the plan lists, for the help text."""
    def add(f):
        f = click.option("--gpu-memory", type=click.FloatRange(min=0, min_open=True), default=80.0,
                         show_default=True, help="With --plan: memory of one GPU in GiB, the verdict's bound.")(f)
        f = click.option("--json", "as_json", is_flag=True, help="With --plan: print the plan as JSON.")(f)
        return click.option("--plan", is_flag=True, help=f"Print each {what}'s models and peak memory per GPU "
                            "(from config.json, no weights loaded) and exit.")(f)
    return add


def plan_cli(command: str, cfg, *, as_json: bool, gpu_memory: float, **kwargs) -> None:
    """Print the plan (text, or JSON with ``as_json``); exit status 0 either way."""
    plan = make_plan(command, cfg, gpu_memory=gpu_memory, **kwargs)
    click.echo(json.dumps(plan, indent=2) if as_json else render(plan))
