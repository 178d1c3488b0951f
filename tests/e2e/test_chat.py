"""`lab chat`: a scripted (piped) conversation keeps its history and stops at /exit."""

from click.testing import CliRunner

from lab_tools import chat as chat_mod


def test_piped_chat_keeps_history_and_exits(tiny_model, monkeypatch):
    seen = []
    real = chat_mod.reply

    def spy(model, tok, history, **kw):
        seen.append([dict(m) for m in history])
        return real(model, tok, history, max_new_tokens=4)

    monkeypatch.setattr(chat_mod, "reply", spy)
    res = CliRunner().invoke(chat_mod.chat, ["--model", str(tiny_model), "--system", "Be brief."],
                             input="hello\n\nhow are you?\n/exit\nnever read\n")
    assert res.exit_code == 0, res.output
    assert res.output.count("model: ") == 2
    assert [m["role"] for m in seen[1]] == ["system", "user", "assistant", "user"]
    assert seen[1][1]["content"] == "hello" and seen[1][3]["content"] == "how are you?"
    assert all(h[-1]["content"] != "never read" for h in seen)


def test_reset_and_end_of_input(tiny_model, monkeypatch):
    seen = []
    monkeypatch.setattr(chat_mod, "reply", lambda m, t, history, **kw: seen.append(list(history)) or "ok")
    res = CliRunner().invoke(chat_mod.chat, ["--model", str(tiny_model)], input="one\n/reset\ntwo\n")
    assert res.exit_code == 0, res.output
    assert [len(h) for h in seen] == [1, 1] and "history cleared" in res.output
