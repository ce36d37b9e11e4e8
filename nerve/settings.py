"""The one typed configuration of the service: environment variables prefixed ``NERVE_``.

Built by :func:`load_settings` (never at import), so tests and tools can build their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nerve.batching import BatchSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
# The shared CrossNER copy sits beside the checkout (a clean clone in CI too).
CROSSNER_DIR = REPO_ROOT.parent / "shared" / "data" / "crossner"
# What runs a transformer encoder in process: torch, or its ONNX export (fp32 or int8).
EncoderRuntime = Literal["torch", "onnx", "onnx-int8"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NERVE_", env_file=None, extra="ignore")

    # --- process -----------------------------------------------------------------------------
    data_dir: Path = Field(Path("./data"), description="State directory (Milvus Lite, models).")
    host: str = Field("127.0.0.1", description="Address `nerve serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `nerve serve` binds.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="One JSON object per log line (else plain text).")
    load_demo_domain: bool = Field(False, description="Load the demo domain at start-up.")

    # --- request limits ----------------------------------------------------------------------
    max_text_chars: int = Field(
        200_000,
        ge=1,
        description="Longest accepted /v1/ner text, in characters (a long one is answered in "
        "segments: see segment_chars, segment_batch).",
    )
    max_example_chars: int = Field(
        10_000, ge=1, description="Longest accepted pool example text, in characters."
    )
    max_batch_items: int = Field(32, ge=1, description="Most items in one /v1/ner/batch call.")
    max_entity_types: int = Field(50, ge=1, description="Most entity types in one request.")
    default_top_k: int = Field(5, ge=0, description="Examples retrieved per query by default.")
    max_top_k: int = Field(20, ge=0, description="Largest top_k a request may ask for.")
    segment_chars: int = Field(
        600, ge=50, description="Long texts are split into segments of at most this many chars."
    )
    segment_batch: int = Field(
        32,
        ge=1,
        description="Segments of one text embedded (and, for baner/lar, encoded) in one pass.",
    )
    segment_concurrency: int = Field(
        4,
        ge=1,
        description="Segments of one text a method without batches (wraner) answers at once.",
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1_000,
        description="Micro-batching: how long, in ms, the first of concurrent requests waits "
        "for others to share its embedding pass, vector search and encoder pass (0: off, each "
        "request alone).",
    )
    batch_max: int = Field(
        32, ge=1, description="Micro-batching: most items (segments) in one shared pass."
    )
    max_in_flight: int = Field(
        64, ge=1, description="Concurrent /v1/ner requests; more get 429 (not queued)."
    )
    max_jobs: int = Field(
        2, ge=1, description="Jobs of /v1/ner/jobs running at once (the worker pool)."
    )
    max_queued_jobs: int = Field(
        100, ge=0, description="Jobs waiting for a worker; more get 429 (not queued)."
    )
    job_records: int = Field(
        1_000,
        ge=1,
        description="In process: job records kept (each with its answer), the oldest finished "
        "going first, and a new job finding only unfinished ones gets 429. With Redis: "
        "unfinished jobs of all replicas together (one more gets 429).",
    )
    job_ttl_s: float = Field(
        86_400.0, gt=0, description="How long a finished job's record (its answer) is kept, s."
    )
    job_lease_s: float = Field(
        60.0,
        gt=0,
        description="With Redis: a queued or running job whose process stopped renewing its "
        "lease (renewed every quarter of it) for this long reads as failed, error lost, s.",
    )
    warm_search: bool = Field(
        True,
        description="Load every domain's in-process search copy (Milvus Lite) at start-up, in "
        "the background; /readyz answers 503 until done.",
    )
    max_examples_per_upload: int = Field(5_000, ge=1, description="Examples in one upload.")

    # --- vector store ------------------------------------------------------------------------
    milvus_uri: str | None = Field(
        None, description="Milvus server URI; unset = Milvus Lite in <data_dir>/milvus.db."
    )
    milvus_token: str | None = Field(None, description="Milvus auth token (user:password).")
    milvus_timeout_s: float = Field(30.0, gt=0, description="Timeout of one Milvus call, s.")
    collection_prefix: str = Field("nerve", description="Prefix of the Milvus collection names.")
    ivf_nlist: int = Field(128, ge=1, description="IVF_FLAT clusters per segment.")
    ivf_nprobe: int = Field(16, ge=1, description="IVF_FLAT clusters searched per query.")

    # --- embeddings and retrieval ------------------------------------------------------------
    embedder_model: Path | None = Field(
        None, description="sentence-transformers model dir; unset = packaged all-MiniLM-L6-v2."
    )
    word_embedding: Literal["context", "alone"] = Field(
        "context", description="Embed each word in its sentence's context, or on its own."
    )
    retrieval: Literal["word", "sentence"] = Field(
        "word", description="Rank pool examples by word-level or sentence-level similarity."
    )
    word_hits: int = Field(16, ge=1, description="Nearest pool words fetched per query word.")
    embedder_runtime: EncoderRuntime = Field(
        "onnx",
        description="What runs the embedder's transformer: torch, ONNX Runtime fp32 (exported "
        "into onnx_dir on first use; the torch vectors to ~1e-6, same signature) or ONNX "
        "Runtime int8 (other vectors, which depend on the batch: pools indexed by another "
        "runtime must be re-indexed).",
    )
    onnx_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "nerve" / "onnx",
        description="Exported ONNX encoders, named by a digest of their weights (so data dirs, "
        "runs and processes can share it); default ~/.cache/nerve/onnx.",
    )
    onnx_threads: int = Field(
        1,
        ge=0,
        description="ONNX Runtime threads per forward pass; 0 = one per core. 1 by default: "
        "concurrent requests already keep the cores busy, and intra-op threads on one "
        "sentence's small matrices cost more than they gain (music, 2 cores: 1 client p50 "
        "113 -> 92 ms, 8 clients 14.8 -> 18.7 req/s; docs/benchmarks.md).",
    )

    numeric_threads: int = Field(
        1,
        ge=0,
        description="Threads of numpy's BLAS, OpenMP and torch's CPU ops in this process "
        "(BANER's typing and heads, pooling); 0 = the libraries' default, one per core. 1 by "
        "default, like onnx_threads: two BLAS threads doubled BANER's CPU per sentence "
        "(27.8 -> 55.1 ms; docs/benchmarks.md).",
    )

    # --- generation --------------------------------------------------------------------------
    generator: Literal["llama_cpp", "openai", "triton"] = Field(
        "llama_cpp", description="Which LLM backend answers the prompts."
    )
    llm_model_path: Path | None = Field(
        None, description="GGUF model; unset = Gemma-3-270M assembled into <data_dir>/models."
    )
    llm_adapter: str = Field(
        "wraner",
        description="LoRA GGUF over the model: 'wraner' (the shipped IF-WRANER adapter, "
        "model_repository/llm_cpu/1/adapters), 'cllmfs' (the shipped CLLMFS adapter, same "
        "place), 'none' (the untuned base model) or a path.",
    )
    llm_merge_adapter: Literal["off", "same", "q8_0", "f16"] = Field(
        "off",
        description="Serve the LoRA adapter merged into the model (nerve.generation.merge_lora; "
        "built on first use into <data_dir>/models/merged, keyed by the model's and the "
        "adapter's hashes) instead of applying it per token: 'same' requantises the merged "
        "weights to each base tensor's own type (the base model's size and speed), 'q8_0' or "
        "'f16' keep them finer; 'off' applies the adapter unmerged. In process only; "
        "docs/benchmarks.md compares the answers and times.",
    )
    llm_threads: int = Field(2, ge=1, description="llama.cpp CPU threads.")
    llm_context_tokens: int = Field(
        2048,
        ge=256,
        description="The LLM's context window, tokens (llama.cpp's n_ctx); prompts are fitted "
        "into it, less max_new_tokens, by dropping the least similar examples.",
    )
    max_new_tokens: int = Field(128, ge=1, description="Most tokens generated per segment.")
    loop_lines: int = Field(
        4,
        ge=0,
        description="The same answer line this many times back to back is a greedy loop: "
        "llama.cpp stops there and the answer escalates (output_repeated). 0 = off.",
    )
    cllmfs_adapter: str = Field(
        "none",
        description="LoRA GGUF of method=cllmfs over the same base model: 'cllmfs' (the shipped "
        "CLLMFS adapter, model_repository/llm_cpu/1/adapters), a path, or 'none' (not served: "
        "the default, since it loads a second llama.cpp model and scores below wraner, see "
        "docs/benchmarks.md). Served by llama.cpp in process, or by Triton "
        "(NERVE_TRITON_CLLMFS_MODEL) when NERVE_GENERATOR=triton.",
    )
    constrained_decoding: bool = Field(
        False,
        description="Generate LLM answers under a grammar (nerve.prompting.answer_grammar) admitting only "
        "the answer format, the requested types and runs of the text's words (llama.cpp in "
        "process and in Triton's CPU model, TensorRT-LLM guided decoding on GPU, llama.cpp "
        "servers behind NERVE_GENERATOR=openai).",
    )
    generation_timeout_s: float = Field(60.0, gt=0, description="Timeout of one generation, s.")
    openai_base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. /v1.")
    openai_model: str = Field("default", description="Model name sent to that server.")
    openai_api_key: str | None = Field(None, description="Bearer key for that server.")
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address host:port.")
    triton_model: str = Field("ensemble", description="Triton model answering text_input.")
    triton_cllmfs_model: str = Field(
        "llm_cpu_cllmfs",
        description="Triton model answering method=cllmfs when NERVE_GENERATOR=triton and "
        "NERVE_CLLMFS_ADAPTER is set: `nerve triton` generates llm_cpu_cllmfs (llm_cpu with that "
        "adapter); on GPU, the CLLMFS engine's ensemble (build_engines --model-suffix).",
    )
    triton_retries: int = Field(2, ge=0, description="Retries on UNAVAILABLE per Triton call.")

    # --- methods -------------------------------------------------------------------------------
    default_method: str | None = Field(
        None,
        description="The method answering requests that name none (must be served); unset = "
        "auto where it is served (encoder methods on, calibration present), else wraner.",
    )

    # --- encoder methods (BANER, LAR) --------------------------------------------------------
    encoder_methods: bool = Field(True, description="Serve method=baner and method=lar.")
    encoder_backend: Literal["inprocess", "triton"] = Field(
        "inprocess", description="Run BANER/LAR in process, or call their Triton models."
    )
    baner_artefact_dir: Path | None = Field(
        None, description="BANER artefact dir; unset = model_repository/baner/1."
    )
    encoder_model: Path | None = Field(
        None, description="Base encoder dir for BANER; unset = the one the artefact names."
    )
    encoder_runtime: EncoderRuntime = Field(
        "onnx",
        description="What runs BANER/LAR's encoder in process: torch, ONNX Runtime fp32 (the "
        "default; exported with the LoRA merged into onnx_dir on first use) or ONNX Runtime "
        "int8 (about 60% less CPU; F1 -0.1 with the MiniLM backbone but -4 with mpnet on "
        "CrossNER; each text runs alone, so its answer never depends on its batch: "
        "docs/benchmarks.md).",
    )
    lar_options_file: Path | None = Field(
        None, description="LAR's calibrated options (lar.json); unset = model_repository/lar/1."
    )
    lar_inference: Literal["direct", "enhanced"] = Field(
        "direct", description="LAR re-typing by similarity (direct) or by asking the LLM."
    )
    lar_postprocess: bool = Field(
        True,
        description="Let LAR re-type LLM spans of types not asked for, or overlapping ones.",
    )
    encoder_support_k: int = Field(
        20, ge=1, description="Support examples retrieved for BANER/LAR type prototypes."
    )
    triton_baner_model: str = Field("baner", description="Triton model serving BANER.")
    triton_lar_model: str = Field("lar", description="Triton model serving LAR.")
    encoder_timeout_s: float = Field(10.0, gt=0, description="Timeout of one encoder call, s.")

    # --- method=auto (the cascade: the encoder first, the LLM where it is unsure) -------------
    cascade_rule: Literal["replace", "union", "trust", "best"] = Field(
        "best",
        description="How auto combines BANER's and the LLM's answers on a routed segment "
        "(nerve/methods/auto/policy.py). best: of overlapping candidates, the one the calibrated merge "
        "model scores highest, if at least the keep threshold; the rule both calibrations' "
        "dev sets prefer (measured in docs/benchmarks.md, stop 30).",
    )
    cascade_route_threshold: float | None = Field(
        None,
        ge=0,
        le=1.01,
        description="auto asks the LLM when a segment's route score is below this (0: never, "
        "above 1: always); unset = the calibration's fitted threshold (its router's), else 0.6 "
        "on the least certain encoder entity's calibrated probability.",
    )
    cascade_calibration: Path | None = Field(
        None,
        description="auto's calibration JSON (nerve train cascade); unset = "
        "model_repository/cascade/calibration-fold-a.json (the shipped adapter's fold).",
    )

    # --- the domain's gazetteer (names its stored examples labelled; nerve/pool_rules/gazetteer.py) ---
    gazetteer: bool = Field(
        True,
        description="Retype returned spans, and add unclaimed names, by the labels of the "
        "domain's stored examples (every method; measured in docs/benchmarks.md).",
    )
    gazetteer_min_type_share: float = Field(
        0.5, ge=0, lt=1, description="A name's majority type must have more than this share."
    )
    gazetteer_min_entity_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A name is added where it occurs only if the pool labels it in at least "
        "this share of its occurrences.",
    )
    gazetteer_min_add_chars: int = Field(
        4, ge=1, description="Shorter names are retyped but never added."
    )
    gazetteer_boundaries: bool = Field(
        True,
        description="Move a returned entity's edges to where the domain's stored names of its "
        "type begin and end (a year before an election, a title's 'The').",
    )
    gazetteer_boundary_min_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="An edge moves over a word where the pool puts that word inside (or "
        "outside) its names of the type at least this often.",
    )
    gazetteer_domains: int = Field(64, ge=1, description="Gazetteers kept in memory (LRU).")
    gazetteer_max_examples: int = Field(
        200_000, ge=1, description="Examples of a domain read to build its gazetteer."
    )
    gazetteer_wait_s: float = Field(
        2.0,
        ge=0,
        description="How long a request waits for its domain's gazetteer to build (a pool of a "
        "few thousand examples takes under a second); past it, the previous one answers.",
    )
    truecase: bool = Field(
        False,
        description="Give a segment typed all in lowercase the casing of the domain's stored "
        "examples before the method reads it (needs the gazetteer). Off: measured on 400 "
        "lowercased test sentences it cost wraner 1.4 F1 (docs/benchmarks.md, stop 28).",
    )

    # --- escalation --------------------------------------------------------------------------
    default_score_threshold: float = Field(
        0.5, ge=0, le=1, description="Entities scoring under this escalate (domain default)."
    )
    degrade_without_retrieval: bool = Field(
        False, description="If the vector store is down, answer zero-shot and escalate (not 503)."
    )

    # --- cache -------------------------------------------------------------------------------
    redis_url: str | None = Field(None, description="Redis URL; unset = in-process LRU cache.")
    cache_ttl_s: float = Field(3600.0, gt=0, description="Lifetime of a cached answer, s.")
    cache_entries: int = Field(10_000, ge=0, description="In-process cache size (0 disables).")
    redis_timeout_s: float = Field(0.5, gt=0, description="Timeout of one Redis call, s.")
    # Feedback usually follows within hours; a week covers a slow human review queue.
    feedback_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="How long /v1/feedback can refer to a request, s."
    )

    # --- auth --------------------------------------------------------------------------------
    auth_enabled: bool = Field(False, description="Require API keys (off in the embedded default).")
    api_keys_file: Path | None = Field(
        None, description="JSON of hashed API keys: [{sha256, tenant, admin}]."
    )

    @field_validator("llm_adapter")
    @classmethod
    def _adapter(cls, value: str) -> str:
        if value not in ("wraner", "cllmfs", "none") and not Path(value).is_file():
            raise ValueError(
                f"llm_adapter must be 'wraner', 'cllmfs', 'none' or a file; got {value!r}"
            )
        return value

    @property
    def prompt_char_budget(self) -> int:
        """Longest prompt the gateway sends, in characters: a backend-agnostic bound (no
        tokenizer here) at a conservative 3 characters a token (English runs about 4)."""
        return max(0, self.llm_context_tokens - self.max_new_tokens) * 3

    @property
    def batching(self) -> BatchSettings:
        return BatchSettings(wait_s=self.batch_wait_ms / 1000, max_items=self.batch_max)

    @property
    def milvus_lite_path(self) -> Path:
        return self.data_dir / "milvus.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit ``overrides`` (CLI flags, tests) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
