"""llama.cpp in process: greedy completion with per-token log-probabilities.

:class:`LlamaCppEngine` is the synchronous core (also used by the CPU Triton model, so both
paths produce the same text); :class:`LlamaCppGenerator` is the asynchronous ``Generator``.

Log-probabilities: llama-cpp-python's ``create_completion(logprobs=...)`` needs
``logits_all=True``, which keeps ``n_ctx x n_vocab`` floats (2 GB for Gemma's 262k vocabulary
at 2048 tokens) and computes the full-vocabulary head for every prompt token. Instead the engine
drives ``Llama.generate`` itself and reads only the last position's logits after each step.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import numpy as np

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation.base import Generation, GenerationRequest, TokenLogprob
from nerve.generation.weights import model_files
from nerve.prompting.parser import longest_line_run
from nerve.prompting.prompt import instruction_prefix
from nerve.settings import Settings

if TYPE_CHECKING:  # llama_cpp loads its library on import: only where a model runs
    from llama_cpp import llama_sampler_p

log = logging.getLogger(__name__)

BACKEND = "llm"
# llama.cpp's llama_token_data (id, logit, p), for masking the whole vocabulary at once.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class LlamaCppEngine:
    """One GGUF model (optionally with a LoRA GGUF) answering one completion at a time.

    Thread-safe: a lock serialises the calls, because a ``Llama`` object is not. A prompt is
    evaluated as its fixed head (the instruction) then the rest; the KV cache keeps the head,
    so the next prompt with the same head evaluates only the rest (``Generation.cached_tokens``).
    Greedy decoding runs here, not in ``Llama.generate``, so that a grammar masks the vocabulary
    only when the most likely token breaks it (:meth:`_choose`).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        lora_path: Path | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        n_batch: int = 512,
        loop_lines: int = 0,
    ) -> None:
        from llama_cpp import Llama

        if not model_path.is_file():
            raise BackendUnavailable(BACKEND, f"model file {model_path} does not exist")
        self.model_path = model_path
        self.lora_path = lora_path
        self.n_ctx = n_ctx
        self.loop_lines = loop_lines
        self.name = model_path.stem + (f"+{lora_path.stem}" if lora_path else "")
        self._lock = threading.Lock()
        try:
            self._llm = Llama(
                model_path=str(model_path),
                lora_path=str(lora_path) if lora_path else None,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=min(n_batch, n_ctx),
                # Keep every position in the sliding-window layers' cache (Gemma 3): the cached
                # prompt head stays usable after a long prompt. A few MB at this model's size.
                swa_full=True,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(BACKEND, f"cannot load {self.name}: {exc}") from exc
        self._vocab = self._llm._model.vocab
        self._n_vocab = self._llm.n_vocab()
        self._closed = False
        # The last prompt head and its tokens (see _prefix_length).
        self._head_text = ""
        self._head_tokens: list[int] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppEngine:
        model_path, lora_path = model_files(settings)
        return cls(
            model_path,
            lora_path=lora_path,
            n_ctx=settings.llm.context_tokens,
            n_threads=settings.llm.threads,
            loop_lines=settings.wraner.loop_lines,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def tokenize(self, text: str) -> list[int]:
        # special=False: a client's text that happens to spell "<bos>" stays plain text.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        grammar: str | None = None,
        prefix: str | None = None,
    ) -> Generation:
        """Greedy completion of ``prompt``; the text excludes the stop sequence that ended it.

        ``grammar``: GBNF text the completion must match (llama.cpp grammar sampling); if it
        runs out of ``max_tokens``, the text ends at its last complete line, so that no half
        line (a cut type name) reaches the parser; ``finish_reason`` stays ``length``.

        ``deadline`` is a ``time.monotonic()`` instant: generation stops there with
        :class:`BackendTimeout` (checked between tokens; the prompt pass itself is atomic), and
        so it does when ``cancelled()`` turns true (a Triton client that gave up).

        ``prefix``: the prompt's query-independent head, evaluated once and reused from the KV
        cache by the next prompt with the same head; ``None``: the instruction of a prompt of
        :mod:`nerve.prompting.prompt` (:func:`nerve.prompting.prompt.instruction_prefix`), so that every
        caller (the Triton CPU model too) splits a prompt the same way and gets the same answer.
        Raises :class:`InvalidRequest` when the prompt and ``max_tokens`` exceed the context:
        the caller chose the examples, so the caller must send fewer.
        """
        if max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be at least 1; got {max_tokens}")
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise BackendTimeout(BACKEND, "deadline passed before the generation started")
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise BackendTimeout(BACKEND, "the model stayed busy until the deadline")
        try:
            if self._closed:
                raise BackendUnavailable(BACKEND, "the model is closed")
            stops = tuple(s for s in stop if s)
            head = instruction_prefix(prompt) if prefix is None else prefix
            return self._complete_locked(
                prompt, max_tokens, stops, deadline, cancelled, grammar, head
            )
        finally:
            self._lock.release()

    def _complete_locked(
        self,
        prompt: str,
        max_tokens: int,
        stop: tuple[str, ...],
        deadline: float | None,
        cancelled: Callable[[], bool] | None,
        grammar: str | None,
        head: str,
    ) -> Generation:
        import llama_cpp

        prompt_tokens = self.tokenize(prompt)
        if len(prompt_tokens) + max_tokens > self.n_ctx:
            raise InvalidRequest(
                f"the prompt is {len(prompt_tokens)} tokens and max_tokens is {max_tokens}: "
                f"together more than the model's context of {self.n_ctx} tokens; "
                "send fewer examples (top_k) or a shorter text"
            )
        keep = self._prefix_length(prompt_tokens, head)
        pieces: list[bytes] = []
        logprobs: list[float] = []
        finish_reason = "length"
        stop_at: int | None = None
        longest_stop = max((len(s) for s in stop), default=0)
        scanned = 0
        sampler = self._grammar_sampler(grammar) if grammar else None
        try:
            reused = self._evaluate_prompt(prompt_tokens, keep)
            while True:
                token = self._choose(sampler)
                if token is None or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish_reason = "stop"
                    break
                if sampler is not None:
                    llama_cpp.llama_sampler_accept(sampler, token)
                pieces.append(self._piece(token))
                logprobs.append(self._last_logprob(token))
                check_loop = self.loop_lines and b"\n" in pieces[-1]
                if (stop and sampler is None) or check_loop:
                    text = b"".join(pieces).decode("utf-8", errors="ignore")
                # Under a grammar the grammar ends the answer: a stop sequence it admits inside
                # an entity text (a query containing "###") must not cut a line in half.
                if stop and sampler is None:
                    stop_at = _find_stop(text, stop, max(0, scanned - longest_stop))
                    scanned = len(text)
                    if stop_at is not None:
                        finish_reason = "stop"
                        break
                if check_loop:
                    complete = text[: text.rfind("\n")]
                    if longest_line_run(complete) >= self.loop_lines:
                        # A greedy loop: the rest would be the same line up to max_tokens.
                        stop_at, finish_reason = len(complete), "stop"
                        break
                if len(pieces) >= max_tokens:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise BackendTimeout(
                        BACKEND, f"generation passed its deadline after {len(pieces)} tokens"
                    )
                if cancelled is not None and cancelled():
                    raise BackendTimeout(BACKEND, f"cancelled after {len(pieces)} tokens")
                self._llm.eval([token])
        except (RuntimeError, OSError) as exc:
            # A failed decode leaves the KV cache in an unknown state: forget the cached prefix.
            self._llm.reset()
            raise BackendUnavailable(BACKEND, f"llama.cpp failed: {exc}") from exc
        finally:
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        if sampler is not None:
            text = b"".join(pieces).decode("utf-8", errors="ignore")
            if finish_reason == "length":
                stop_at = max(0, text.rfind("\n"))
            else:  # the grammar's own end (e.g. the blank line) is a stop sequence: cut it
                stop_at = next((len(text) - len(s) for s in stop if text.endswith(s)), None)
        return _assemble(pieces, logprobs, stop_at, finish_reason, len(prompt_tokens), reused)

    def _prefix_length(self, tokens: list[int], head: str) -> int:
        """How many leading ``tokens`` are the prompt's fixed ``head``: evaluated as a batch of
        their own and kept in the KV cache for the next prompt with the same head.

        The split depends on the prompt alone, never on the previous request: evaluating a
        prompt in other batches moves its logits by float rounding (llama.cpp's kernels differ
        by batch size), and a greedy answer must not depend on what was asked before it.
        0 (no split) when the head does not tokenize to a proper prefix of the prompt.
        """
        if not head:
            return 0
        if head != self._head_text:
            self._head_text, self._head_tokens = head, self.tokenize(head)
        n = len(self._head_tokens)
        # At least one token after the head: its logits choose the first answer token.
        return n if n < len(tokens) and tokens[:n] == self._head_tokens else 0

    def _evaluate_prompt(self, tokens: list[int], keep: int) -> int:
        """Evaluate ``tokens`` as ``[:keep]`` then ``[keep:]``, the head taken from the KV cache
        when the previous prompt had the same one; returns the tokens taken from the cache."""
        import llama_cpp

        llm = self._llm
        reused = 0
        if keep and llm.n_tokens >= keep and llm.input_ids[:keep].tolist() == tokens[:keep]:
            llm.n_tokens = keep
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            # The cache must still hold the head from position 0 (a sliding-window layer's
            # cache may have dropped old positions; swa_full keeps them, this checks it).
            memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
            if llama_cpp.llama_memory_seq_pos_min(memory, 0) == 0:
                reused = keep
        if not reused:
            llm.reset()
            if keep:
                llm.eval(tokens[:keep])
        llm.eval(tokens[keep:])
        return reused

    def _grammar_sampler(self, grammar: str) -> llama_sampler_p:
        """A llama.cpp grammar sampler for ``grammar`` (GBNF); the caller frees it.

        llama-cpp-python does not parse the grammar first, and llama.cpp returns NULL for one
        it cannot parse: that is the caller's error."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not sampler:
            raise InvalidRequest("the grammar does not parse (llama.cpp GBNF)")
        return sampler

    def _choose(self, sampler: llama_sampler_p | None) -> int | None:
        """The greedy next token, admitted by the grammar ``sampler`` if there is one.

        As llama.cpp's own common sampler does, the grammar first judges only the most likely
        token, and masks the whole vocabulary (262k tokens for Gemma, the costly step) only
        when it rejects that one. Greedy decoding picks the same token either way: the argmax
        of the masked logits is the unmasked argmax whenever the grammar admits it. None when
        the grammar admits no token at all.
        """
        import llama_cpp

        logits = self._logits()
        best = int(logits.argmax())
        if sampler is None:
            return best
        one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(best, logits[best], 0.0))
        array = llama_cpp.llama_token_data_array(one, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        if np.isfinite(one[0].logit):
            return best
        candidates = np.empty(self._n_vocab, dtype=_TOKEN_DATA)
        candidates["id"] = np.arange(self._n_vocab, dtype=np.int32)
        candidates["logit"] = logits
        candidates["p"] = 0.0
        pointer = candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        array = llama_cpp.llama_token_data_array(pointer, self._n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        masked = candidates["logit"]
        best = int(masked.argmax())
        return best if np.isfinite(masked[best]) else None

    def _logits(self) -> np.ndarray:
        # The last evaluated position's logits, read in place (no copy).
        return np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(-1), shape=(self._n_vocab,))

    def _piece(self, token: int) -> bytes:
        import llama_cpp

        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n  # the piece needs -n bytes

    def _last_logprob(self, token: int) -> float:
        # The logits of the step that chose ``token`` are still in the context: the next
        # decode happens only when the generator is resumed.
        logits = self._logits()
        top = float(logits.max())
        return float(logits[token]) - top - float(np.log(np.exp(logits - top).sum()))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._llm.close()


def _find_stop(text: str, stop: tuple[str, ...], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _assemble(
    pieces: list[bytes],
    logprobs: list[float],
    stop_at: int | None,
    finish_reason: str,
    prompt_tokens: int,
    cached_tokens: int = 0,
) -> Generation:
    """Text and per-token (text, logprob, char offset), cut before the stop sequence.

    A character split over byte-fallback pieces belongs to the piece that completes it (the
    others get empty text at the same offset); offsets index the final text.
    """
    text = b"".join(pieces).decode("utf-8", errors="replace")
    offsets: list[int] = []
    consumed = b""
    for piece in pieces:
        offsets.append(len(consumed.decode("utf-8", errors="ignore")))
        consumed += piece
    if stop_at is not None:
        text = text[:stop_at]
    ends = [*offsets[1:], len(text)]
    tokens = [
        TokenLogprob(text=text[start : min(end, len(text))], logprob=logprob, offset=start)
        for start, end, logprob in zip(offsets, ends, logprobs, strict=True)
        if start < len(text)
    ]
    return Generation(
        text=text,
        tokens=tokens,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(pieces),
        cached_tokens=cached_tokens,
    )


class LlamaCppGenerator:
    """The in-process ``Generator``: the engine in a worker thread, one call at a time."""

    name = "llama_cpp"

    def __init__(self, engine: LlamaCppEngine, *, timeout_s: float = 60.0) -> None:
        self._engine = engine
        self._timeout_s = timeout_s
        self.model = engine.name
        # An asyncio lock queues waiting requests on the event loop instead of parking one
        # worker thread per request on the engine's own lock.
        self._lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppGenerator:
        return cls(LlamaCppEngine.from_settings(settings), timeout_s=settings.llm.timeout_s)

    async def generate(self, request: GenerationRequest) -> Generation:
        timeout = request.timeout_s or self._timeout_s
        deadline = time.monotonic() + timeout
        with anyio.move_on_after(timeout) as scope:
            await self._lock.acquire()
        if scope.cancelled_caught:
            raise BackendTimeout(BACKEND, f"no free model slot within {timeout:g} s")
        try:
            # Not abandoned on cancellation: the lock stays held until llama.cpp is really done.
            return await anyio.to_thread.run_sync(self._run, request, deadline)
        finally:
            self._lock.release()

    def _run(self, request: GenerationRequest, deadline: float) -> Generation:
        return self._engine.complete(
            request.prompt,
            max_tokens=request.max_tokens,
            stop=request.stop,
            deadline=deadline,
            grammar=request.grammar,
            prefix=request.prefix or None,
        )

    async def ready(self) -> bool:
        return not self._engine.closed

    async def close(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._engine.close)
