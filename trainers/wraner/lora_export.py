"""Convert a peft LoRA adapter into a llama.cpp LoRA GGUF (applied over the base GGUF).

llama.cpp's adapter format: ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, ``general.architecture`` equal to the base model's, and for each
adapted weight ``<gguf name>.lora_a`` (torch shape ``(r, in)``) and ``<gguf name>.lora_b``
(``(out, r)``); llama.cpp scales ``B @ A`` by ``alpha / r`` like peft does. Tensor names are
mapped with the ``gguf`` package's own HF→GGUF table for the base architecture, so the file
matches what llama.cpp's converter produced for the base model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_OUT_TYPES = {"f16": np.float16, "f32": np.float32}


class LoraExportError(ValueError):
    """The adapter cannot be expressed over this base GGUF (the message names the tensor)."""


def base_gguf_info(base_gguf: Path) -> tuple[str, int, dict[str, tuple[int, ...]]]:
    """(architecture, block count, tensor name → torch-order shape) of a GGUF model."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))
    arch = str(reader.fields["general.architecture"].contents())
    blocks = int(reader.fields[f"{arch}.block_count"].contents())
    # GGUF lists dims fastest-first; torch order is the reverse.
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    return arch, blocks, shapes


def export_lora_gguf(
    adapter_dir: Path, base_gguf: Path, out_path: Path, out_type: str = "f16"
) -> dict[str, object]:
    """Write ``out_path`` from a peft adapter dir; returns a small summary (tensors, bytes)."""
    import gguf
    from safetensors.numpy import load_file

    if out_type not in _OUT_TYPES:
        raise LoraExportError(f"out_type must be one of {sorted(_OUT_TYPES)}, got {out_type!r}")
    config = json.loads((adapter_dir / "adapter_config.json").read_text("utf-8"))
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora") or config.get("use_dora"):
        raise LoraExportError("rsLoRA/DoRA adapters are not supported by llama.cpp's LoRA format")
    arch_name, blocks, shapes = base_gguf_info(base_gguf)
    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
    if arch is None:
        raise LoraExportError(f"unknown GGUF architecture {arch_name!r}")
    names = gguf.get_tensor_name_map(arch, blocks)

    weights = _load_weights(adapter_dir, load_file)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise LoraExportError(f"adapter tensor {key!r} is not a lora_A/lora_B weight")
        pairs.setdefault(match["module"], {})[match["part"]] = value

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    dtype = _OUT_TYPES[out_type]
    for module in sorted(pairs):
        parts = pairs[module]
        if set(parts) != {"A", "B"}:
            raise LoraExportError(f"{module}: lora_A and lora_B must both be present")
        hf_name = module.removeprefix("model.language_model.").removeprefix("language_model.")
        if not hf_name.startswith("model."):
            hf_name = "model." + hf_name
        target = names.get_name(hf_name)
        if target is None:
            raise LoraExportError(f"{module}: no {arch_name} GGUF tensor for {hf_name}")
        base_shape = shapes.get(target + ".weight")
        a, b = parts["A"], parts["B"]
        if base_shape is None or (b.shape[0], a.shape[1]) != base_shape:
            raise LoraExportError(
                f"{module}: LoRA ({b.shape[0]}, {a.shape[1]}) does not fit {target}.weight "
                f"{base_shape}"
            )
        writer.add_tensor(target + ".weight.lora_a", np.ascontiguousarray(a.astype(dtype)))
        writer.add_tensor(target + ".weight.lora_b", np.ascontiguousarray(b.astype(dtype)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out_path)
    return {"tensors": 2 * len(pairs), "bytes": out_path.stat().st_size, "alpha": alpha}


def _load_weights(adapter_dir: Path, load_file: object) -> dict[str, np.ndarray]:
    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise LoraExportError(f"{adapter_dir} has no adapter_model.safetensors")
    try:
        raw = load_file(str(path))  # type: ignore[operator]
        return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    except (TypeError, ValueError):
        # numpy cannot hold bfloat16: go through torch for bf16-trained adapters.
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}
