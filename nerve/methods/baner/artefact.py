"""Building BANER's network and saving/loading its compact artefact.

The artefact is two files: ``baner.json`` (:class:`BanerConfig`) and ``adapter.safetensors``
(the LoRA matrices of the encoder and the small heads, in fp16): a few MB, where the fine-tuned
encoder itself would be ~90 MB. Loading rebuilds the base encoder from its own files, applies the
adapter and merges it, so inference costs the same as the bare encoder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from nerve.engines.smoothing import RANGES_FILE
from nerve.methods.baner.backbone import load_encoder
from nerve.methods.baner.config import OPTIONS_FILE, WEIGHTS_FILE, BanerConfig
from nerve.methods.baner.net import BanerNet

_LORA_PREFIX = "lora."
_HEAD_PREFIX = "heads."
_NULL_KEY = "null"


def build_net(config: BanerConfig) -> tuple[object, BanerNet]:
    """(tokenizer, trainable network): base encoder frozen except its LoRA matrices."""
    from peft import LoraConfig, get_peft_model

    tokenizer, encoder = load_encoder(config.encoder)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.05,
        target_modules=list(config.lora_targets),
        bias="none",
    )
    return tokenizer, BanerNet(get_peft_model(encoder, lora), config)


def adapter_state(net: BanerNet) -> dict[str, torch.Tensor]:
    """The trained tensors only (LoRA matrices, heads, null anchor)."""
    from peft import get_peft_model_state_dict

    state = {_LORA_PREFIX + k: v for k, v in get_peft_model_state_dict(net.encoder).items()}
    for name, module in net.heads().items():
        for key, value in module.state_dict().items():
            state[f"{_HEAD_PREFIX}{name}.{key}"] = value
    state[_NULL_KEY] = net.null.detach()
    return state


def save_artefact(net: BanerNet, directory: Path) -> list[Path]:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in adapter_state(net).items()}
    weights = directory / WEIGHTS_FILE
    save_file(state, str(weights), metadata={"format": "nerve-baner.v1"})
    weights.chmod(0o644)  # safetensors writes 0600; images run the models as another user
    # The int8 activation ranges were measured on the old weights: `nerve train baner-int8`.
    (directory / RANGES_FILE).unlink(missing_ok=True)
    return [net.config.save(directory), weights]


def load_adapter_state(net: BanerNet, state: dict[str, torch.Tensor]) -> None:
    """Load tensors saved by :func:`save_artefact` into a freshly built (unmerged) network."""
    from peft import set_peft_model_state_dict

    lora = {
        k[len(_LORA_PREFIX) :]: v.float() for k, v in state.items() if k.startswith(_LORA_PREFIX)
    }
    result = set_peft_model_state_dict(net.encoder, lora)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise ValueError(f"adapter keys not used by the encoder: {missing[:3]}")
    for name, module in net.heads().items():
        prefix = f"{_HEAD_PREFIX}{name}."
        module.load_state_dict(
            {k[len(prefix) :]: v.float() for k, v in state.items() if k.startswith(prefix)}
        )
    with torch.no_grad():
        net.null.copy_(state[_NULL_KEY].float())


def artefact_digest(directory: Path) -> str:
    """A short digest of the trained weights and the calibrated options: what makes one
    artefact's answers differ from another's on the same base encoder (the answer cache key
    names it, so a retrained or recalibrated artefact never serves the old one's answers).
    The int8 activation ranges count when present: they change int8's answers."""
    digest = hashlib.sha256()
    for name in (WEIGHTS_FILE, OPTIONS_FILE):
        path = Path(directory) / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    ranges = Path(directory) / RANGES_FILE
    if ranges.is_file():
        digest.update(RANGES_FILE.encode())
        digest.update(ranges.read_bytes())
    return digest.hexdigest()[:10]


def read_adapter(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no BANER weights {WEIGHTS_FILE} in {directory}; regenerate with "
            "`python -m trainers.baner`"
        )
    return load_file(str(path))


def load_artefact(directory: Path, encoder: str | None = None) -> tuple[object, BanerNet]:
    """(tokenizer, inference network with the adapter merged) from an artefact directory.

    ``encoder`` overrides where the base encoder is read from (a mounted copy of the same model);
    the adapter only fits the encoder it was trained on, which the config names.
    """
    config = BanerConfig.load(Path(directory))
    if encoder is not None:
        config.encoder = encoder
    tokenizer, net = build_net(config)
    load_adapter_state(net, read_adapter(Path(directory)))
    net.encoder = net.encoder.merge_and_unload()
    net.eval()
    return tokenizer, net
