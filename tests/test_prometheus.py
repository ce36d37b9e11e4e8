"""The Grafana dashboard and the alerting rules checked by a real Prometheus (Debian package
``prometheus``): it scrapes a real ``nerve serve`` that has answered, escalated, taken feedback,
failed (a Redis outage, unknown domains) and cached, and every PromQL expression of every panel
and template variable must parse and return data through Prometheus' HTTP API. ``promtool``
checks and unit-tests deploy/prometheus/alerts.yml, which the same Prometheus loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nerve.settings import REPO_ROOT
from nerve.subprocesses import die_with_parent
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess
from tests.fixtures.processes import free_port, stop_group
from tests.fixtures.redis import RedisServer
from tests.fixtures.settings import as_env

pytestmark = pytest.mark.integration

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "nerve.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.test.yml"
INSTALL_HINT = "prometheus is not installed: make test-deps (apt-get install prometheus)"
SCRAPE_S = 1
# What Grafana puts in place of its variables: every domain and method, and windows that hold
# a few scrapes of this fast-scraping Prometheus.
GRAFANA_VARIABLES = {
    "${domain}": ".*",
    "$domain": ".*",
    "${method}": ".*",
    "$method": ".*",
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "5s",
}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(INSTALL_HINT)
    return path


def test_alert_rules_pass_promtool() -> None:
    promtool = binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((f"{panel['title']} [{target.get('refId', '')}]", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and text:
            queries.append((f"variable {variable['name']}", text))
    return queries


def grafana_to_promql(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": f"{SCRAPE_S}s",
                        "evaluation_interval": f"{SCRAPE_S}s",
                    },
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "nerve-gateway",
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> None:
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.log()[-3000:])
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready in {timeout_s} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        assert body.get("status") == "success", (path, params, body)
        return body["data"]

    def scrapes(self) -> int:
        """Successful scrapes of the gateway so far."""
        result = self.api("query", query='sum(count_over_time(up{job="nerve-gateway"}[1h]))')
        return int(float(result["result"][0]["value"][1])) if result["result"] else 0

    def wait_scrapes(self, more: int, timeout_s: float = 60) -> None:
        target = self.scrapes() + more
        deadline = time.monotonic() + timeout_s
        while self.scrapes() < target:
            assert time.monotonic() < deadline, "prometheus stopped scraping the gateway"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, timeout_s=20)
            self.process = None


@pytest.fixture
def monitored(
    base_settings: dict[str, Any], disposable_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Prometheus, RedisServer]]:
    """A gateway on Redis (answers cache, request records), scraped every second."""
    env = as_env(base_settings)
    env |= {"NERVE_REDIS_URL": disposable_redis.url, "NERVE_REDIS_TIMEOUT_S": "0.3"}
    gateway = ServerProcess(tmp_path / "data", tmp_path / "gateway.log", env)
    gateway.start(timeout_s=240)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{gateway.port}")
    try:
        prometheus.start()
        yield gateway, prometheus, disposable_redis
    finally:
        prometheus.stop()
        gateway.stop()


def serve_traffic(client: httpx.Client, redis: RedisServer, round_: int) -> None:
    """Answers (escalated or not, cached, both encoder methods and the LLM), feedback that adds
    an example, client errors, and a Redis outage: failed dependency calls and 503s."""
    texts = [
        "Maria Lopez says her Pixel 8 never arrived in Madrid.",
        f"Thanks for the quick help, round {round_}!",  # no product: escalated
    ]
    answers = []
    for method in ("baner", "lar"):
        for text in texts:
            response = client.post(
                "/v1/ner", json={"text": text, "domain": "support", "method": method}
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
    cached = client.post("/v1/ner", json={"text": texts[0], "domain": "support", "method": "baner"})
    assert cached.status_code == 200 and cached.json()["cached"], cached.text
    llm = client.post("/v1/ner", json={"text": f"Order B-77{round_} for Sam.", "domain": "support"})
    assert llm.status_code == 200, llm.text
    escalated = next(a for a in answers if a["escalate"])
    feedback = client.post(
        "/v1/feedback",
        json={"request_id": escalated["request_id"], "outcome": "escalated", "entities": []},
    )
    assert feedback.status_code == 200, feedback.text
    assert client.post("/v1/ner", json={"text": "x", "domain": "nowhere"}).status_code == 404
    assert client.post("/v1/ner", json={"domain": "support"}).status_code == 422

    redis.kill()
    try:
        down = client.post(
            "/v1/ner",
            json={"text": f"Ana in Rome, {round_}.", "domain": "support", "method": "baner"},
        )
        assert down.status_code == 200, down.text  # Redis is an optimisation for answers
        refused = client.post(
            "/v1/feedback", json={"request_id": down.json()["request_id"], "outcome": "resolved"}
        )
        assert refused.status_code == 503, refused.text
    finally:
        redis.start()


@pytest.mark.slow
def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    monitored: tuple[ServerProcess, Prometheus, RedisServer],
) -> None:
    gateway, prometheus, redis = monitored
    prometheus.wait_scrapes(2)
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        # Two rounds with scrapes between them: counters that exist before the second round
        # grow during it, so rates are real increases, not just new series.
        serve_traffic(client, redis, 1)
        prometheus.wait_scrapes(3)
        serve_traffic(client, redis, 2)
    prometheus.wait_scrapes(3)

    empty, failed = [], []
    for where, expr in dashboard_queries():
        promql = grafana_to_promql(expr)
        if where.startswith("variable"):
            metric, label = promql.removeprefix("label_values(").rstrip(")").split(", ")
            values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
            if not values:
                empty.append(f"{where}: {expr}")
            continue
        response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            failed.append(f"{where}: {body.get('error')}: {promql}")
        elif not body["data"]["result"]:
            empty.append(f"{where}: {promql}")
    assert not failed, "queries Prometheus refused:\n" + "\n".join(failed)
    assert not empty, "queries without data:\n" + "\n".join(empty)

    # The traffic really shows: answers flowed and some were escalated, 5xx were counted.
    def value(query: str) -> float:
        result = prometheus.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else 0.0

    assert value("sum(increase(nerve_answers_total[1h]))") > 0
    assert value("sum(increase(nerve_escalated_answers_total[1h]))") > 0
    assert value('sum(increase(nerve_requests_total{status="503"}[1h]))') > 0
    assert value('sum(nerve_backend_errors_total{backend="redis"})') > 0

    # The alerting rules are loaded and evaluate without error against these series.
    groups = prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {
        "NerveEscalationRateHigh",
        "NerveBackendErrors",
        "NerveServerErrorRateHigh",
    }
    assert all(r["health"] == "ok" for r in rules.values()), rules
