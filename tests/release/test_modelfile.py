"""Ollama Modelfile: the chat template read off the tokenizer's Jinja template, in Go-template form.

The templates below are the families' own (SmolLM2's ChatML with its default system message,
Llama 3, Zephyr), plus two that no per-message Go template can express (Llama 2, Gemma)."""

import pytest
from transformers import AutoTokenizer

from lab_tools.release.modelfile import (TemplateNotSupported, derive_chat_format, go_template,
                                         modelfile_text, tokenizer_chat_format)

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
           "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
           "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
           "{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
ZEPHYR = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] "
          "+ eos_token }}{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + "
          "eos_token }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n'  + message['content'] + "
          "eos_token }}{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
          "{% endfor %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message "
          "= messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
          "{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
          "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
          "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
          "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
         "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + "
         "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
         "{{'<start_of_turn>model\n'}}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a colour."}],
]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def _render(tok, template, bos, eos):
    def render(messages, gen):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen,
                                       chat_template=template, bos_token=bos, eos_token=eos)
    return render


def test_smollm2_chatml_gives_ollamas_chatml_template_and_default_system(tok):
    fmt = derive_chat_format(_render(tok, SMOLLM2, "<|im_start|>", "<|im_end|>"), ["<|im_start|>", "<|im_end|>"])
    assert fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert fmt.preamble == "" and fmt.stops == ("<|im_end|>", "<|im_start|>")
    assert go_template(fmt) == (
        '{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}'
        '{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n'
        '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
        '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}'
        '{{ end }}{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant\n{{ end }}{{ end }}')
    text = modelfile_text("model-q8_0.gguf", fmt)
    assert "FROM ./model-q8_0.gguf\n" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert text.endswith('PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|im_start|>"\n')


@pytest.mark.parametrize("template,bos,eos,specials,preamble,stops", [
    (SMOLLM2, "<|im_start|>", "<|im_end|>", ["<|im_start|>", "<|im_end|>"], "", ("<|im_end|>", "<|im_start|>")),
    (LLAMA3, "<|begin_of_text|>", "<|eot_id|>",
     ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>",
     ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>")),
    (ZEPHYR, "<s>", "</s>", ["<s>", "</s>"], "", ("</s>",)),
])
def test_go_form_renders_what_the_jinja_template_renders(tok, template, bos, eos, specials, preamble, stops):
    render = _render(tok, template, bos, eos)
    fmt = derive_chat_format(render, specials)
    assert fmt.preamble == preamble and fmt.stops == stops
    for conv in CONVERSATIONS:  # other contents than the markers the format was read with
        assert fmt.render(conv) == render(conv, True)


def test_tiny_models_own_template_has_no_default_system(tok):
    fmt = tokenizer_chat_format(tok)
    assert fmt.default_system is None and fmt.wrap["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    assert "SYSTEM" not in modelfile_text("m.gguf", fmt)


@pytest.mark.parametrize("template,why", [(LLAMA2, "differently"), (GEMMA, "System role not supported")])
def test_templates_that_merge_messages_are_refused_with_the_reason(tok, template, why):
    with pytest.raises(TemplateNotSupported, match=why):
        derive_chat_format(_render(tok, template, "<s>", "</s>"), ["<s>", "</s>"])


def test_go_template_escapes_literal_braces():
    from lab_tools.release.modelfile import ChatFormat

    fmt = ChatFormat(preamble="", wrap={"system": ("{{sys}} ", "\n"), "user": ("U: ", "\n"),
                                        "assistant": ("A: ", "\n")},
                     generation="A:", default_system=None, stops=("U:",))
    assert '{{ "{{sys}} " }}{{ .Content }}' in go_template(fmt)
