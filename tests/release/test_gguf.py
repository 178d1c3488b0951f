"""`lab release --gguf`: GGUF files written by llama.cpp's own converter (and quantizer), loaded and
run by llama.cpp; the Ollama Modelfile; SHA256SUMS; clean errors.

The model is a tiny random-weight Llama with SmolLM2's tokenizer: llama.cpp's converter
recognises a BPE pre-tokenizer by the tokens it gives on a check text, so it needs a real
tokenizer (the embedded model's, as a release of `lab build` has). The converter sources are
fetched once into the user's lab-tools cache (the pinned llama-cpp-python sdist, 77 MB); the
tests skip when that download is impossible (no network to PyPI), and the ones that run the
GGUF skip when llama-cpp-python is not installed.
"""

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lab_tools.config import default_cache_dir
from lab_tools.errors import LabError
from lab_tools.release import llamacpp
from lab_tools.release.gguf_export import export_gguf, gguf_file_type
from lab_tools.tiny import make_tiny_model, save_embedded_tokenizer
from tests.release.test_release import build_run_dir

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason="llama-cpp-python is not installed "
                                     "(pip install llama-cpp-python==0.3.36): the GGUF cannot be run")
TYPES = ["f16", "q8_0"] + (["q4_k_m"] if HAVE_LLAMA_CPP else [])


@pytest.fixture(scope="module")
def converter():
    """The converter folder in the user's cache (fetched on first use)."""
    try:
        return llamacpp.converter_dir(default_cache_dir())
    except LabError as exc:
        if "cannot download" in str(exc):
            pytest.skip(f"llama.cpp's converter could not be fetched: {exc}")
        raise


@pytest.fixture(scope="module")
def smol_tiny(tmp_path_factory):
    """A tiny random-weight Llama (hidden 64, 2 layers) with SmolLM2's tokenizer and chat template."""
    tok = save_embedded_tokenizer(tmp_path_factory.mktemp("smol-tokenizer"))
    return make_tiny_model(tmp_path_factory.mktemp("smol-tiny"), tokenizer_dir=tok)


@pytest.fixture(scope="module")
def gguf_release(tmp_path_factory, smol_tiny, repo_root, converter):
    """`lab release --gguf f16 --gguf q8_0 [--gguf q4_k_m]` of a run whose checkpoint is smol_tiny."""
    from click.testing import CliRunner

    from lab_tools.cli import cli

    run = build_run_dir(tmp_path_factory.mktemp("gguf") / "run", smol_tiny, repo_root)
    args = ["release", "--run", str(run)] + [a for t in TYPES for a in ("--gguf", t)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "model-f16.gguf" in result.output
    return run / "release"


def test_release_lists_the_ggufs_and_modelfile_in_sha256sums(gguf_release):
    out = gguf_release
    done = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert {f"model-{t}.gguf" for t in TYPES} | {"Modelfile"} <= listed
    assert listed == {p.name for p in out.iterdir()} - {"SHA256SUMS"}  # no scratch file left behind
    info = json.loads((out / "release.json").read_text())
    assert [f["type"] for f in info["gguf"]["files"]] == TYPES
    assert {f"model-{t}.gguf" for t in TYPES} | {"Modelfile"} <= set(info["files"])
    assert "convert_hf_to_gguf.py" in info["gguf"]["converter"]
    assert (info["gguf"]["quantizer"] is not None) == HAVE_LLAMA_CPP
    want = {"f16": 1, "q8_0": 7, "q4_k_m": 15}  # llama_ftype of each type
    for t in TYPES:
        assert gguf_file_type(out / f"model-{t}.gguf") == want[t]


def test_gguf_metadata_comes_from_the_converter(gguf_release):
    from gguf import GGUFReader

    r = GGUFReader(str(gguf_release / "model-f16.gguf"))
    val = {k: r.get_field(k).contents() for k in ("general.architecture", "general.name",
                                                  "tokenizer.ggml.pre", "tokenizer.chat_template")}
    assert val["general.architecture"] == "llama" and val["general.name"] == "SmolLM2-135M-Instruct-lab"
    assert val["tokenizer.ggml.pre"] == "smollm"  # recognised by llama.cpp's own pre-tokenizer check
    assert "<|im_start|>" in val["tokenizer.chat_template"]
    assert r.get_field("llama.embedding_length").contents() == 64


def test_modelfile_has_from_template_system_and_stops(gguf_release):
    text = (gguf_release / "Modelfile").read_text()
    lines = text.splitlines()
    assert "FROM ./model-f16.gguf" in lines  # the first type asked for
    assert 'TEMPLATE """{{ range $i, $_ := .Messages }}' in text and "<|im_start|>user\n{{ .Content }}<|im_end|>" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in lines
    assert [ln for ln in lines if ln.startswith("PARAMETER stop")] == [
        'PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|im_start|>"']


@needs_llama_cpp
@pytest.mark.parametrize("qtype", TYPES)
def test_gguf_loads_and_answers_with_llama_cpp(gguf_release, smol_tiny, qtype):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    llm = Llama(model_path=str(gguf_release / f"model-{qtype}.gguf"), n_ctx=256, verbose=False, seed=0)
    text = "Hello world, 3333 apples!"
    tok = AutoTokenizer.from_pretrained(smol_tiny)
    assert llm.tokenize(text.encode(), add_bos=False) == tok.encode(text, add_special_tokens=False)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
    assert out["usage"]["completion_tokens"] > 0
    assert out["usage"]["prompt_tokens"] == len(tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    llm.close()


@needs_llama_cpp
def test_f16_gguf_gives_the_safetensors_next_token_logits(gguf_release, smol_tiny):
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_tiny)
    ids = tok.encode("The quick brown fox jumps over", add_special_tokens=False)
    hf = AutoModelForCausalLM.from_pretrained(smol_tiny, dtype=torch.float32)
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0, -1].numpy()
    llm = Llama(model_path=str(gguf_release / "model-f16.gguf"), n_ctx=64, verbose=False, logits_all=True)
    llm.eval(ids)
    got = np.asarray(llm.scores[len(ids) - 1])
    llm.close()
    assert np.argmax(got) == np.argmax(want)
    assert np.abs(got - want).max() < 0.05 * max(1.0, np.abs(want).max())


@needs_llama_cpp
def test_lab_serve_runs_the_gguf_with_llama_cpp_server(gguf_release):
    if not all(importlib.util.find_spec(m) for m in ("sse_starlette", "starlette_context", "pydantic_settings")):
        pytest.skip("llama-cpp-python's server extras are not installed (pip install 'llama-cpp-python[server]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lab_tools", "serve", str(gguf_release), "--gguf", "q8_0",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "with llama.cpp" in first and "model-q8_0.gguf" in first, first + proc.stdout.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            assert [m["id"] for m in json.load(resp)["data"]] == ["release"]
        from openai import OpenAI

        out = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none").chat.completions.create(
            model="release", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        assert out.usage.completion_tokens > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    with pytest.raises(OSError):  # the llama.cpp server went down with `lab serve`
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_unknown_type_is_a_usage_error(run_lab, tmp_path):
    code, cap = run_lab(["release", "--run", str(tmp_path), "--gguf", "q3_x"])
    assert code == 2 and "q3_x" in cap.err and "q4_k_m" in cap.err and "Traceback" not in cap.err


def test_template_without_go_form_fails_before_converting(tmp_path, tiny_model):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    for f in ("chat_template.jinja",):
        (model / f).unlink(missing_ok=True)
    cfg["chat_template"] = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                            "{% endif %}{{ m['content'] }}{% endfor %}")
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(LabError, match="no Ollama Modelfile can carry this chat template") as err:
        export_gguf(model, model, ["q8_0"], cache_dir=tmp_path / "cache")
    assert err.value.field == "chat_template"
    assert not list(model.glob("*.gguf")) and not (tmp_path / "cache").exists()  # nothing fetched or run


def test_download_failure_names_the_file_to_place(tmp_path):
    with pytest.raises(LabError, match="cannot download") as err:
        llamacpp.converter_dir(tmp_path, url=(tmp_path / "absent.tar.gz").as_uri())
    assert str(tmp_path / "llama.cpp" / llamacpp.SDIST_NAME) in str(err.value)


def test_sdist_with_another_hash_is_refused_and_removed(tmp_path):
    bad = tmp_path / "llama.cpp" / llamacpp.SDIST_NAME
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the sources")
    with pytest.raises(LabError, match="is not the pinned"):
        llamacpp.converter_dir(tmp_path)
    assert not bad.exists() and not (tmp_path / "llama.cpp" / f"converter-{llamacpp.SDIST_VERSION}").exists()


def test_missing_converter_module_is_named(monkeypatch, tmp_path, tiny_model):
    monkeypatch.setattr(llamacpp, "CONVERTER_MODULES", ("torch", "no_such_module_for_lab"))
    with pytest.raises(LabError, match="needs no_such_module_for_lab: pip install no_such_module_for_lab"):
        llamacpp.convert_hf_to_gguf(tiny_model, tmp_path / "x.gguf", "f16", cache_dir=tmp_path)


def test_converter_failure_quotes_llama_cpps_reason(tmp_path, converter):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["NoSuchLabForCausalLM"]}))
    t0 = time.monotonic()
    with pytest.raises(LabError, match="NoSuchLabForCausalLM is not supported") as err:
        llamacpp.convert_hf_to_gguf(model, tmp_path / "x.gguf", "f16", cache_dir=default_cache_dir())
    assert "exit code 1" in str(err.value) and time.monotonic() - t0 < 300


def test_k_quant_without_llama_cpp_fails_before_converting(monkeypatch, tmp_path, tiny_model):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(LabError, match=r"q4_k_m needs llama.cpp's llama-quantize: pip install llama-cpp-python==0\.3\.36"):
        export_gguf(tiny_model, tmp_path, ["q8_0", "q4_k_m"], cache_dir=tmp_path / "cache")
    assert not list(tmp_path.glob("*.gguf")) and not (tmp_path / "cache").exists()
