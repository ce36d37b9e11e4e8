"""A LoRA GGUF merged into its base GGUF: one model file, no adapter to apply per token.

llama.cpp applies a LoRA adapter at run time: every adapted matrix costs two extra small matrix
products per token (``W x + s B (A x)``, ``s = alpha / r``). Merging computes
``W' = W + s B A`` once, as llama.cpp's ``llama-export-lora`` does, and writes ``W'`` in ``W``'s
own quantisation type (llama.cpp's quantiser, through ``ggml_quantize_chunk``), so the merged
file has the base file's exact layout, size and speed. Only the adapted tensors' bytes change;
the merge rewrites them in a copy of the base file.

The merged weights are not bit-for-bit what the unmerged run computes: ``W'`` is quantised
again (``W`` was quantised from the original weights; ``s B A`` is small against it), so a
greedy answer on a near tie may differ. ``docs/history/benchmarks.md`` measures how often.

Merged files are built on first use into a cache directory, named by the hashes of the base
file, the adapter and :data:`MERGE_VERSION`: a new adapter or base model builds a new file.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MERGE_VERSION = "nerve_lora_merge.v1"
_LORA_A = ".lora_a"
_LORA_B = ".lora_b"


class LoraMergeError(ValueError):
    """The adapter does not fit the base model (the message names the tensor)."""


@dataclass(frozen=True)
class MergeSummary:
    tensors: int  # base tensors changed
    scale: float  # alpha / rank
    types: dict[str, int]  # quantisation type -> tensors requantised in it


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def merged_path(base: Path, adapter: Path, cache_dir: Path, weight_type: str = "same") -> Path:
    """Where the merge of ``adapter`` into ``base`` is cached (it may not exist yet)."""
    key = hashlib.sha256(
        f"{MERGE_VERSION}\n{file_sha256(base)}\n{file_sha256(adapter)}".encode()
    ).hexdigest()[:16]
    return cache_dir / f"{base.stem}+{adapter.stem}-{weight_type}-{key}.gguf"


def ensure_merged_gguf(
    base: Path, adapter: Path, cache_dir: Path, weight_type: str = "same"
) -> Path:
    """The merged model of ``base`` and ``adapter`` in ``cache_dir``, built there on first use.

    Built in a temporary file then renamed: an interrupted or concurrent build never leaves a
    half-merged model under the final name.
    """
    target = merged_path(base, adapter, cache_dir, weight_type)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("merging %s into %s -> %s", adapter.name, base.name, target)
        write_merged(base, adapter, tmp, weight_type)
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_merged(
    base_path: Path, adapter: Path, out: Path, weight_type: str = "same", scale: float = 1.0
) -> MergeSummary:
    """Write ``out``: ``base_path`` with ``scale * alpha / r * B A`` of every adapter pair added.

    ``weight_type``: the quantisation of the merged tensors, ``same`` (each base tensor's own
    type: the base file's layout and speed) or a GGML type name (``q8_0``, ``f16``...): finer
    types keep more of the small ``B A`` the requantisation rounds away.
    """
    import gguf
    from gguf.quants import dequantize

    lora = gguf.GGUFReader(str(adapter))
    if _field(lora, "general.type") != "adapter" or _field(lora, "adapter.type") != "lora":
        raise LoraMergeError(f"{adapter} is not a LoRA adapter GGUF")
    base = gguf.GGUFReader(str(base_path))
    arch = str(_field(base, "general.architecture"))
    if _field(lora, "general.architecture") != arch:
        raise LoraMergeError(f"{adapter} is for another architecture than {arch!r}")
    alpha = float(_field(lora, "adapter.lora.alpha") or 0.0)
    fixed = None if weight_type == "same" else gguf.GGMLQuantizationType[weight_type.upper()]
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in lora.tensors:
        suffix = next((s for s in (_LORA_A, _LORA_B) if tensor.name.endswith(s)), None)
        if suffix is None:
            raise LoraMergeError(f"adapter tensor {tensor.name!r} is not a lora_a/lora_b")
        values = dequantize(tensor.data, tensor.tensor_type)
        pairs.setdefault(tensor.name.removesuffix(suffix), {})[suffix] = values
    names = {t.name for t in base.tensors}
    for name, parts in pairs.items():
        if set(parts) != {_LORA_A, _LORA_B} or name not in names:
            raise LoraMergeError(f"{name}: needs lora_a, lora_b and a base tensor")
    quantize = _ggml_quantizer()
    writer = gguf.GGUFWriter(str(out), arch)
    _copy_fields(base, writer)
    counts: dict[str, int] = {}
    used_scale = scale
    for tensor in base.tensors:
        lora_pair = pairs.get(tensor.name)
        if lora_pair is None:
            writer.add_tensor(
                tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type
            )
            continue
        a, b = lora_pair[_LORA_A], lora_pair[_LORA_B]  # (r, in), (out, r)
        w = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if a.shape[0] != b.shape[1] or (b.shape[0], a.shape[1]) != w.shape:
            raise LoraMergeError(
                f"{tensor.name}: LoRA {b.shape} x {a.shape} does not fit the weight {w.shape}"
            )
        # llama.cpp: scale = adapter scale * alpha / rank, or the adapter scale if alpha is 0.
        used_scale = scale * alpha / a.shape[0] if alpha else scale
        merged = w + used_scale * (b.astype(np.float32) @ a.astype(np.float32))
        kind = fixed or gguf.GGMLQuantizationType(tensor.tensor_type)
        data = quantize(kind, np.ascontiguousarray(merged, dtype=np.float32))
        writer.add_tensor(tensor.name, data, raw_dtype=kind)
        counts[kind.name] = counts.get(kind.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return MergeSummary(tensors=len(pairs), scale=used_scale, types=counts)


def _copy_fields(reader: object, writer: object) -> None:
    """Every metadata field of ``reader`` into ``writer`` (as gguf's gguf_new_metadata does),
    but those the writer writes itself."""
    import gguf

    for field in reader.fields.values():  # type: ignore[attr-defined]
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)  # type: ignore[attr-defined]


def _field(reader: object, key: str) -> str | float | None:
    field = reader.fields.get(key)  # type: ignore[attr-defined]
    return None if field is None else field.contents()


def _ggml_quantizer() -> _Quantizer:
    """llama.cpp's own quantiser (``ggml_quantize_chunk`` in the ggml library llama-cpp-python
    ships): the type the base file holds, quantised exactly as ``llama-quantize`` does."""
    import llama_cpp

    library = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    function = library.ggml_quantize_chunk
    function.restype = ctypes.c_size_t
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    return _Quantizer(function)


class _Quantizer:
    def __init__(self, function: Callable[..., int]) -> None:
        self._function = function

    def __call__(self, kind: object, values: np.ndarray) -> np.ndarray:
        """``values`` (rows, n) quantised: the bytes, one row of them per row."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        assert isinstance(kind, GGMLQuantizationType)
        rows, per_row = values.shape
        block, size = GGML_QUANT_SIZES[kind]
        if per_row % block:
            raise LoraMergeError(f"rows of {per_row} values do not fill {kind.name} blocks")
        out = np.empty((rows, per_row // block * size), dtype=np.uint8)
        written = self._function(
            int(kind), values.ctypes.data, out.ctypes.data, 0, rows, per_row, None
        )
        if written != out.nbytes:
            raise LoraMergeError(f"{kind.name}: quantised {written} bytes, not {out.nbytes}")
        return out
