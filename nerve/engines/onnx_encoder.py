"""Transformer encoders run by ONNX Runtime instead of torch (the embedder's and BANER's).

The ONNX files are derived artefacts: exported from the loaded torch model (BANER's with its
LoRA already merged) with ``torch.onnx`` (dynamic batch and sequence axes) into a cache
directory on first use, named by a digest of the weights, so a changed model never meets a
stale file; int8 is ONNX Runtime's dynamic quantisation of that export. Every export is
checked against torch on a probe batch before it is kept. :class:`OnnxEncoder` is a drop-in for
the transformers model (``model(input_ids=..., attention_mask=...).last_hidden_state``), so the
code around it (tokenising, pooling, BANER's heads) stays as it is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from nerve.settings import EncoderRuntime

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
# Part of every file's digest: bump it when the export itself changes.
EXPORT_FORMAT = "nerve-onnx-encoder.v1"
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
# The int8 file's suffix names its recipe, so a new recipe never reuses an old file.
INT8_RECIPE = "int8-per-channel"
# Largest |onnx - torch| on the probe batch an fp32 export may show (measured: ~4e-6).
FP32_TOLERANCE = 1e-3


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime is asked for but cannot run here (not installed, or the export failed)."""


def precision_of(runtime: EncoderRuntime) -> Precision | None:
    """None for torch; the ONNX precision otherwise."""
    return {"torch": None, "onnx": "fp32", "onnx-int8": "int8"}[runtime]


def _require(setting: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxUnavailable(
            f"{setting} needs the onnxruntime package, which is not installed "
            "(pip install onnxruntime, or set it to torch)"
        ) from exc
    return onnxruntime


def weights_digest(model: nn.Module) -> str:
    """A digest of the model's class, configuration and every weight: the cache key."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    digest.update(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class _LastHiddenState(nn.Module):
    """The graph exported: ids and mask in, last hidden states out (token types all 0)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _probe(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two rows of different lengths (fixed seed: reproducible checks)."""
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 1000))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (2, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def export_fp32(model: nn.Module, path: Path) -> None:
    """Export ``model`` to ``path`` (one file, dynamic batch and sequence axes)."""
    graph = _LastHiddenState(model).eval()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    ids, mask = _probe(model)
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            (ids, mask),
            dynamo=True,
            verbose=False,
            external_data=False,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        )
    if program is None:
        raise OnnxUnavailable("torch.onnx.export returned no program")
    program.save(str(path))


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantisation of ``source``: weights int8 with one scale per
    output channel, activations quantised per batch at run time. One scale per tensor (the
    default) cost 1.7 F1 on CrossNER music (docs/history/benchmarks.md); per channel keeps the hidden
    states much closer to fp32 (token cosine 0.99 against 0.95). The activations' scale is the
    whole input's, so :class:`OnnxEncoder` runs an int8 model one text at a time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def max_abs_diff(model: nn.Module, session: Any) -> float:
    """Largest |onnx - torch| over the real (unpadded) positions of the probe batch."""
    ids, mask = _probe(model)
    with torch.no_grad():
        expected = _LastHiddenState(model).eval()(ids, mask).numpy()
    got = session.run([OUTPUT], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    keep = mask.numpy().astype(bool)
    return float(np.abs(got - expected)[keep].max())


def _atomic(target: Path, write: Any) -> None:
    """Write ``target`` through a temporary file and a rename: never a half-written model."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: one per core (ONNX Runtime's default)
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ensure_onnx(model: nn.Module, cache_dir: Path, name: str, precision: Precision) -> Path:
    """The ONNX file of ``model`` at ``precision`` in ``cache_dir``, exported on first use.

    A new fp32 export must agree with torch on the probe batch (``FP32_TOLERANCE``), else
    :class:`OnnxUnavailable`: a silently wrong graph is worse than no graph.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{weights_digest(model)}"
    # Several processes may start at once on a fresh cache (the test suite's workers, a
    # gateway beside a Triton model): one exports while the others wait, and ONNX Runtime's
    # quantiser writes a fixed-name scratch file beside its input that two runs would share.
    with FileLock(str(cache_dir / f"{stem}.lock")):
        return _ensure_onnx_locked(model, cache_dir, stem, name, precision)


def _ensure_onnx_locked(
    model: nn.Module, cache_dir: Path, stem: str, name: str, precision: Precision
) -> Path:
    fp32 = cache_dir / f"{stem}-fp32.onnx"
    if not fp32.is_file():
        log.info("exporting %s to ONNX into %s", name, cache_dir)
        try:
            _atomic(fp32, lambda tmp: _checked_export(model, tmp))
        except OnnxUnavailable:
            raise
        except Exception as exc:
            raise OnnxUnavailable(
                f"exporting {name} to ONNX failed ({exc.__class__.__name__}: {exc})"
            ) from exc
    if precision == "fp32":
        return fp32
    int8 = cache_dir / f"{stem}-{INT8_RECIPE}.onnx"
    if not int8.is_file():
        log.info("quantising %s to int8", fp32.name)
        _atomic(int8, lambda tmp: quantize_int8(fp32, tmp))
    return int8


def _checked_export(model: nn.Module, path: Path) -> None:
    export_fp32(model, path)
    diff = max_abs_diff(model, _session(path, 1))
    if not diff <= FP32_TOLERANCE:
        raise OnnxUnavailable(
            f"the ONNX export disagrees with torch: max |diff| {diff:.3g} > {FP32_TOLERANCE}"
        )


class OnnxEncoder(nn.Module):
    """Stands in for a transformers encoder: same call, same ``last_hidden_state``, run by ONNX
    Runtime. It holds no torch weights; ``config`` is the original model's.

    Each text of a batch runs alone, unpadded. int8 quantises activations with one scale per
    run: alone, a text's states never depend on its batch-mates. fp32 too: padding to the
    longest text cost more than one call per text saves (embedder, music, 8 a batch, one
    thread: 25 ms CPU a sentence padded, 20 alone; the same vectors)."""

    def __init__(self, path: Path, config: Any, threads: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.config = config
        self.session = _session(self.path, threads)
        # Rows of one batch run side by side, one core each (a single row's matrices are too
        # small for intra-op threads to pay); one text alone keeps the intra-op threads.
        self.row_workers = (os.cpu_count() or 1) if threads == 0 else threads
        self._row_session: Any = None
        self._row_pool: ThreadPoolExecutor | None = None
        if self.row_workers > 1:
            # ONNX Runtime releases the GIL in run(): one-thread sessions' rows run in parallel.
            self._row_session = _session(self.path, 1)
            self._row_pool = ThreadPoolExecutor(self.row_workers, thread_name_prefix="onnx-row")

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        *,
        runtime: EncoderRuntime,
        cache_dir: Path,
        name: str,
        threads: int = 0,
        setting: str = "the ONNX runtime",
    ) -> OnnxEncoder:
        """``model`` exported (or found in ``cache_dir``) at ``runtime``'s precision and loaded.

        ``setting`` names what asked for it, for the error when ONNX Runtime is missing."""
        precision = precision_of(runtime)
        if precision is None:
            raise ValueError("runtime 'torch' needs no ONNX encoder")
        _require(setting)
        path = ensure_onnx(model.eval(), Path(cache_dir), name, precision)
        return cls(path, getattr(model, "config", None), threads)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ValueError("the ONNX encoder was exported for single-segment inputs only")
        ids = input_ids.numpy().astype(np.int64, copy=False)
        mask = attention_mask.numpy().astype(np.int64, copy=False)
        hidden = np.zeros((*ids.shape, self._width(ids, mask)), dtype=np.float32)
        rows = [np.flatnonzero(mask[row]) for row in range(len(ids))]  # without padding
        alone = self._run_rows(
            [(ids[r : r + 1, kept], mask[r : r + 1, kept]) for r, kept in enumerate(rows)]
        )
        for row, (kept, states) in enumerate(zip(rows, alone, strict=True)):
            hidden[row, kept] = states[0]
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def _run(self, ids: np.ndarray, mask: np.ndarray, session: Any = None) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        return (session or self.session).run([OUTPUT], feed)[0]

    def _run_rows(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        if len(rows) == 1 or self._row_pool is None:
            return [self._run(ids, mask) for ids, mask in rows]
        session = self._row_session
        return list(self._row_pool.map(lambda row: self._run(row[0], row[1], session), rows))

    def _width(self, ids: np.ndarray, mask: np.ndarray) -> int:
        hidden_size = getattr(self.config, "hidden_size", None)
        return int(hidden_size) if hidden_size else self._run(ids[:1, :1], mask[:1, :1]).shape[-1]
