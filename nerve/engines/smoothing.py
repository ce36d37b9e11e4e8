"""SmoothQuant for int8 encoders: move the activation outliers of each transformer layer's
linear projections into their weights before dynamic int8 quantisation.

In all-mpnet-base-v2 the input of each layer's FFN output projection (the GELU's output) has
a few channels that reach 50-100 on a few tokens while most tokens stay under 3 (layers 6-10).
ONNX Runtime's dynamic int8 gives a whole input one activation scale, so those channels squash
every other value into a few int8 steps: plain int8 lost 3-4 F1 on CrossNER dev (hidden states
at cosine 0.87 to fp32). Dividing channel ``j`` of the input by ``s_j`` and multiplying row
``j`` of the weight by ``s_j`` leaves the product unchanged in fp32 and shrinks the range the
int8 step must cover (Xiao et al., SmoothQuant, 2023); ``s_j = amax_j^alpha / wmax_j^(1 -
alpha)``, ``amax_j`` the largest ``|input_j|`` over calibration sentences. Every linear of every
layer is smoothed (the FFN output alone left the states at cosine 0.985, all of them 0.994).
The division is an explicit elementwise ``Mul`` (the GELU before the FFN output cannot absorb
it), negligible beside the matmul.

The activation ranges are measured once, offline (``nerve train baner-int8``), and kept in the
BANER artefact (:data:`RANGES_FILE`); the served encoder applies them before its ONNX export.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

RANGES_FILE = "activation_ranges.safetensors"
# Migration strength, chosen on CrossNER dev (mpnet BANER, hidden-state cosine to fp32 and F1):
# the FFN output's outliers need 0.75 (0.5 left cosine 0.85; 0.85 gave the same as 0.75), the
# other projections' inputs (LayerNorm outputs, attention context) 0.5; docs/results.md.
FFN_OUTPUT_ALPHA = 0.75
ALPHA = 0.5
# A transformer layer's linear projections (BERT, RoBERTa and MPNet: ``encoder.layer.N...``).
LAYER_LINEAR = re.compile(r"(^|\.)layer\.\d+\.")
# Its FFN output projection (the attention's own ``attention.output.dense`` does not match).
FFN_OUTPUT = re.compile(r"(^|\.)layer\.\d+\.output\.dense$")


class InputScaledLinear(nn.Module):
    """``linear(x * inverse_scale)``: a Linear whose input channels are divided by a scale
    the weight was multiplied by (same output in exact arithmetic)."""

    inverse_scale: torch.Tensor

    def __init__(self, linear: nn.Linear, inverse_scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inverse_scale", inverse_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)


def layer_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear projections of the model's transformer layers by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if LAYER_LINEAR.search(name) and isinstance(module, nn.Linear)
    }


def alpha_of(name: str) -> float:
    return FFN_OUTPUT_ALPHA if FFN_OUTPUT.search(name) else ALPHA


@torch.no_grad()
def measure_ranges(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Largest ``|input|`` per input channel of each layer projection over ``batches``
    (keyword inputs of ``model``; padded positions count too, which only widens a range)."""
    ranges: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen

        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layer_linears(model).items()]
    try:
        for batch in batches:
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    if not ranges:
        raise ValueError("the model has no transformer layer projection to measure")
    return ranges


def smoothed(model: nn.Module, ranges: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose layer projections take smoothed inputs (the same function in
    fp32). Every projection must have a range of its width: a mismatch is the wrong file."""
    targets = layer_linears(model)
    if set(targets) != set(ranges):
        raise ValueError(
            f"activation ranges name {sorted(ranges)[:3]}..., the model has "
            f"{sorted(targets)[:3]}... ({len(ranges)} against {len(targets)})"
        )
    out = copy.deepcopy(model)
    for name in targets:
        linear: nn.Linear = out.get_submodule(name)  # type: ignore[assignment]
        amax = ranges[name].to(torch.float32)
        if amax.shape != (linear.in_features,):
            raise ValueError(
                f"{name}: range of width {tuple(amax.shape)}, input {linear.in_features}"
            )
        wmax = linear.weight.detach().abs().amax(0).float() + 1e-8  # per input channel
        alpha = alpha_of(name)
        scale = (amax.clamp_min(1e-5) ** alpha / wmax ** (1 - alpha)).clamp(1e-3, 1e3)
        with torch.no_grad():
            linear.weight.mul_(scale.to(linear.weight.dtype))
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, InputScaledLinear(linear, (1.0 / scale).to(linear.weight.dtype)))
    return out


def save_ranges(
    ranges: Mapping[str, torch.Tensor], directory: Path, meta: Mapping[str, str]
) -> Path:
    path = Path(directory) / RANGES_FILE
    save_file({k: v.contiguous() for k, v in ranges.items()}, str(path), metadata=dict(meta))
    path.chmod(0o644)  # safetensors writes 0600; images run the models as another user
    return path


def load_ranges(directory: Path) -> dict[str, torch.Tensor] | None:
    """The artefact's ranges, or None when it has none (int8 then runs unsmoothed)."""
    path = Path(directory) / RANGES_FILE
    return load_file(str(path)) if path.is_file() else None
