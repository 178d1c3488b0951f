"""`lab chat --model DIR`: a terminal chat with a model, so a maintainer can try a release;
`lab chat --endpoint URL [--model NAME]`: the same with any OpenAI-compatible server
(:mod:`lab_tools.chat_endpoint`, e.g. one started by `lab serve`).

The whole conversation is kept and sent through the tokenizer's chat template each turn.
Commands: ``/exit`` (or ``/quit``, end of input) leaves, ``/reset`` clears the history.
When stdin is not a terminal (a pipe, a test) each input line is one user turn and replies are
printed plainly, so the loop can be scripted.
"""

from __future__ import annotations

import sys

import click

from lab_tools.chat_endpoint import EndpointChat
from lab_tools.engines import ENGINES
from lab_tools.engines.ct2 import CT2Model
from lab_tools.engines.load import load_scoring_model
from lab_tools.errors import UsageError
from lab_tools.models import require_local_model_dir
from lab_tools.progress import quiet_libraries


def reply(model, tok, history: list[dict], *, max_new_tokens: int = 256, temperature: float = 0.0) -> str:
    """Generate the assistant's next message for ``history`` ([{"role", "content"}]).

    Greedy when ``temperature`` is 0. Returns the decoded new tokens, special tokens removed.
    ``model``: a PyTorch causal LM or a :class:`~lab_tools.engines.ct2.CT2Model` (the same
    template, stop tokens and sampling settings; its sampling is not reseeded per turn).
    """
    if isinstance(model, CT2Model):
        text = tok.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        new = model.generate([ids], max_new_tokens=max_new_tokens, temperature=temperature, seed=None)[0]
        return tok.decode(new, skip_special_tokens=True).strip()
    import torch

    ids = tok.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False)
    with torch.no_grad():
        out = model.generate(**ids, **kwargs)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@click.command("chat")
@click.option("--model", "model_spec", default=None,
              help="Model directory (a release) or 'embedded'; with --endpoint the served model's name "
                   "(default: the only one the server lists).")
@click.option("--endpoint", default=None, metavar="URL",
              help="Talk to an OpenAI-compatible server instead (lab serve, llama.cpp, vLLM, Ollama's /v1), "
                   "e.g. http://127.0.0.1:8000/v1.")
@click.option("--system", default=None, help="Optional system message.")
@click.option("--max-new-tokens", type=int, default=256, show_default=True, help="Bound on each reply.")
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="What runs the model: ctranslate2 (int8, CPU; auto picks it when installed) or transformers.")
def chat(model_spec, system, max_new_tokens, temperature, engine, endpoint):
    """Chat with MODEL in the terminal (/exit to leave, /reset to clear the history)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.prompt import Prompt

    if endpoint:
        partner = EndpointChat(endpoint, model_spec)  # the server applies the chat template
        respond = partner.reply
        model_spec = f"{partner.model} at {partner.url}"
    else:
        if not model_spec:
            raise UsageError("give --model DIR (or embedded), or --endpoint URL", field="--model")
        require_local_model_dir(model_spec, "--model")  # before transformers is even imported
        quiet_libraries()
        model, tok = load_scoring_model(model_spec, engine=engine)

        def respond(history, **kwargs):
            return reply(model, tok, history, **kwargs)
    interactive = sys.stdin.isatty()
    console = Console(highlight=False)
    base = [{"role": "system", "content": system}] if system else []
    history = list(base)
    if interactive:
        console.print(f"[bold]lab chat[/] {model_spec} — /exit to leave, /reset to clear the history")
    while True:
        try:
            text = Prompt.ask("[bold green]you[/]", console=console) if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and text == "":
            break  # end of piped input
        text = text.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(base)
            console.print("(history cleared)")
            continue
        history.append({"role": "user", "content": text})
        answer = respond(history, max_new_tokens=max_new_tokens, temperature=temperature)
        history.append({"role": "assistant", "content": answer})
        if interactive:
            console.print(f"[bold cyan]model[/] {escape(answer)}")
        else:
            click.echo(f"model: {answer}")
