"""Memory of llm_cpu and llm_cpu_cllmfs in one real tritonserver: each Python-backend stub's
/proc/<pid>/smaps_rollup (Rss, Pss, private, shared), after one generation each.

PYTHONPATH=$PWD python docs/results/2026-12-02-triton-cllmfs/stub_memory.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from app.generation.base import GenerationRequest
from app.generation.models import ensure_base_gguf
from app.generation.triton import TritonGenerator
from app.settings import REPO_ROOT, load_settings
from app.triton_server import LLM_CPU_CLLMFS, TritonServer
from tests.fixtures.processes import free_port

MODELS = ["llm_cpu", LLM_CPU_CLLMFS]


def rollup(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        fields[key] = int(value.split()[0])  # kB
    return fields


def stubs() -> dict[str, int]:
    """Model name -> stub pid (the stub's command line names its model instance)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"triton_python_backend_stub"):
            text = b" ".join(cmd).decode(errors="replace")
            for model in MODELS:
                if f"/{model}/1/model.py" in text:
                    found[model] = int(proc.name)
    return found


async def generate(url: str) -> None:
    for model in MODELS:
        client = TritonGenerator(url, model, timeout_s=600)
        try:
            await client.generate(GenerationRequest("1, 2, 3, 4,", max_tokens=4))
        finally:
            await client.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp) / "data",
            llm_model_path=ensure_base_gguf(REPO_ROOT / ".cache" / "models"),
            llm_adapter="wraner",
            cllmfs_adapter="cllmfs",
            llm_threads=1,
        )
        server = TritonServer(
            settings, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
            models=MODELS, address="127.0.0.1", workdir=Path(tmp) / "work",
        )  # fmt: skip
        with server:
            asyncio.run(generate(server.grpc_url))
            out = {}
            for model, pid in sorted(stubs().items()):
                r = rollup(pid)
                out[model] = {
                    "rss_mb": round(r["Rss"] / 1024, 1),
                    "pss_mb": round(r["Pss"] / 1024, 1),
                    "private_mb": round((r["Private_Clean"] + r["Private_Dirty"]) / 1024, 1),
                    "shared_mb": round((r["Shared_Clean"] + r["Shared_Dirty"]) / 1024, 1),
                }
            print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
