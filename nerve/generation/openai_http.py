"""An OpenAI-compatible completions server (vLLM, TGI, llama.cpp server) as a ``Generator``."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation.base import Generation, GenerationRequest, TokenLogprob
from nerve.settings import Settings

log = logging.getLogger(__name__)

BACKEND = "llm"
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too long")


class OpenAICompatibleGenerator:
    """``POST {base_url}/completions``, greedy, with per-token log-probabilities.

    One ``httpx.AsyncClient`` (one connection pool) serves every request.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "default",
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self._timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleGenerator:
        if not settings.openai.base_url:
            raise ValueError("NERVE_OPENAI_BASE_URL must be set when NERVE_GENERATOR=openai")
        return cls(
            settings.openai.base_url,
            model=settings.openai.model,
            api_key=settings.openai.api_key,
            timeout_s=settings.llm.timeout_s,
        )

    async def generate(self, request: GenerationRequest) -> Generation:
        timeout = request.timeout_s or self._timeout_s
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": 0.0,
            "logprobs": 1,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.grammar:
            # llama.cpp's servers (llama-server, llama_cpp.server) take a GBNF "grammar" field.
            body["grammar"] = request.grammar
        try:
            response = await self._client.post("completions", json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise BackendTimeout(BACKEND, f"no answer within {timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                BACKEND, f"cannot reach {self._client.base_url}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise _status_error(response)
        try:
            return _parse_completion(response.json())
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendUnavailable(BACKEND, f"malformed completion answer: {exc}") from exc

    async def ready(self) -> bool:
        try:
            response = await self._client.get("models", timeout=min(self._timeout_s, 5.0))
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def close(self) -> None:
        await self._client.aclose()


def _status_error(response: httpx.Response) -> Exception:
    detail = response.text[:300]
    if response.status_code in (400, 422) and any(w in detail.lower() for w in _CONTEXT_WORDS):
        return InvalidRequest(f"the prompt does not fit the model's context: {detail}")
    return BackendUnavailable(BACKEND, f"server answered {response.status_code}: {detail}")


def _parse_completion(payload: dict[str, Any]) -> Generation:
    choice = payload["choices"][0]
    text = choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"choices[0].text is {type(text).__name__}, not a string")
    usage = payload.get("usage") or {}
    return Generation(
        text=text,
        tokens=_tokens(choice.get("logprobs"), text),
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _tokens(logprobs: dict[str, Any] | None, text: str) -> list[TokenLogprob]:
    """Per-token log-probs with offsets into ``text``.

    Servers disagree on ``text_offset`` (relative to the prompt or to the completion), so the
    offsets are recomputed from the token texts, which concatenate to the completion; tokens
    past the end of ``text`` (a stop sequence the server cut off) are dropped.
    """
    if not logprobs:
        return []
    pieces, values = logprobs["tokens"], logprobs["token_logprobs"]
    if len(pieces) != len(values):
        raise ValueError(f"{len(pieces)} tokens but {len(values)} token_logprobs")
    tokens: list[TokenLogprob] = []
    offset = 0
    for piece, value in zip(pieces, values, strict=True):
        if offset >= len(text):
            break
        if value is not None:
            end = min(offset + len(piece), len(text))
            tokens.append(TokenLogprob(text=text[offset:end], logprob=float(value), offset=offset))
        offset += len(piece)
    return tokens
