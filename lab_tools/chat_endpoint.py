"""`lab chat --endpoint URL [--model NAME]`: the chat loop against any OpenAI-compatible server
(``lab serve``, llama.cpp's server, vLLM, ``transformers serve``, Ollama's ``/v1``) through the
``openai`` client. The server applies its model's chat template; the whole history goes with
each turn, as ``lab chat --model`` does it in process.
"""

from __future__ import annotations

import os

import openai

from lab_tools.errors import LabError


class EndpointChat:
    """One conversation partner behind an OpenAI-compatible ``/v1`` endpoint.

    ``url``: the base URL (``http://127.0.0.1:8000/v1``; a URL without a path gets ``/v1``);
    ``model``: the model name requests carry; None: the only model ``/v1/models`` lists.
    ``api_key``: sent as a bearer token (``$OPENAI_API_KEY`` when None; local servers ignore it).

    Raises (on construction):
        LabError: the server does not answer ``/v1/models``, or lists no model or several
        (then ``--model`` is needed; the names are listed).
    """

    def __init__(self, url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout: float = 300):
        url = url.rstrip("/")
        if url.count("/") < 3:  # scheme://host[:port] only
            url += "/v1"
        self.url = url
        self.client = openai.OpenAI(base_url=url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                             timeout=timeout, max_retries=1)
        self.model = model or self._only_model()

    def _only_model(self) -> str:
        try:
            names = [m.id for m in self.client.models.list()]
        except openai.OpenAIError as exc:
            raise LabError(f"{self.url}/models did not answer: {exc}", field="--endpoint") from None
        if len(names) != 1:
            raise LabError(f"{self.url} serves {len(names)} models; pick one with --model"
                           + (f" ({', '.join(names[:20])})" if names else ""), field="--model")
        return names[0]

    def reply(self, history: list[dict], *, max_new_tokens: int = 256, temperature: float = 0.0) -> str:
        """The assistant's next message for ``history`` ([{"role", "content"}]); greedy at
        temperature 0 (as far as the server honours it).

        Raises:
            LabError: the request fails (connection, HTTP error, timeout), message quoted.
        """
        try:
            out = self.client.chat.completions.create(model=self.model, messages=history,
                                                      max_tokens=max_new_tokens, temperature=temperature)
        except openai.OpenAIError as exc:
            raise LabError(f"the endpoint {self.url} failed: {exc}", field="--endpoint") from None
        return (out.choices[0].message.content or "").strip() if out.choices else ""
