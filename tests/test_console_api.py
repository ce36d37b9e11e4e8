"""The review queue and the escalation rate behind the console: the record store's index in
process and in a real Redis, and the routes through the real app (method=baner: no LLM call)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from fastapi.testclient import TestClient

from app.feedback.request_records import RecordStore, RequestRecord, build_record_store
from nerve.cache.memory import MemoryCache
from nerve.metrics import Metrics
from nerve.settings import load_settings

TENANT = "acme"
HOUR = 3600.0
NOW = 1_000 * HOUR + 1_800.0  # half past some hour
ESCALATED_TEXT = "Thanks for the quick help yesterday!"  # no product: required_type_missing
PRODUCT_TEXT = "Maria Lopez says her Pixel 8 never arrived in Madrid."


def record(
    request_id: str, created_at: float, *, escalate: bool = True, **kw: object
) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        tenant=kw.pop("tenant", TENANT),  # type: ignore[arg-type]
        domain=kw.pop("domain", "support"),  # type: ignore[arg-type]
        method="baner",
        text=ESCALATED_TEXT,
        escalate=escalate,
        reasons=["required_type_missing"] if escalate else [],
        created_at=created_at,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[Callable[[], float]], RecordStore]]:
    """A factory of record stores on one backend (two stores on one Redis = two replicas)."""
    opened: list[RecordStore] = []
    memory = MemoryCache(10_000, 7 * 24 * HOUR, clock=lambda: clock_now[0])
    clock_now = [NOW]

    def make(clock: Callable[[], float]) -> RecordStore:
        if request.param == "memory":
            made = RecordStore(memory, Metrics(), 7 * 24 * HOUR, clock=clock)
        else:
            url = request.getfixturevalue("redis_url")
            made = build_record_store(load_settings(redis_url=url), Metrics())
            made._clock = clock  # the index's time; Redis expiry runs on its own clock
        opened.append(made)
        return made

    yield make
    for made in opened:
        if request.param == "redis":
            await made.close()


async def test_the_queue_pages_a_domains_escalations_newest_first(
    store: Callable[[Callable[[], float]], RecordStore],
) -> None:
    writer, reader = store(lambda: NOW), store(lambda: NOW)
    for i in range(500):
        assert await writer.put(record(f"e{i:03d}", NOW - 600 + i))
    await writer.put(record("fine", NOW, escalate=False))
    await writer.put(record("other-domain", NOW, domain="billing"))
    await writer.put(record("other-tenant", NOW, tenant="globex"))
    await writer.put(record("ambiguous", NOW, ambiguous=True))

    page, total = await reader.escalations(TENANT, "support", 0, 20)
    assert total == 500
    assert [r.request_id for r in page] == [f"e{i:03d}" for i in range(499, 479, -1)]
    last, _ = await reader.escalations(TENANT, "support", 480, 50)
    assert [r.request_id for r in last] == [f"e{i:03d}" for i in range(19, -1, -1)]
    assert (await reader.escalations("globex", "support", 0, 5))[1] == 1

    # A report (through either replica) takes the answer out of the queue.
    reported = page[0].model_copy(update={"outcome": "escalated", "reported_at": NOW})
    assert await reader.put(reported)
    page, total = await writer.escalations(TENANT, "support", 0, 2)
    assert total == 499 and [r.request_id for r in page] == ["e498", "e497"]


async def test_records_older_than_the_retention_leave_the_queue(
    store: Callable[[Callable[[], float]], RecordStore],
) -> None:
    now = [NOW]
    records = store(lambda: now[0])
    await records.put(record("old", NOW - 100))
    await records.put(record("new", NOW))
    now[0] = NOW - 100 + records.retention_s + 1
    page, total = await records.escalations(TENANT, "support", 0, 10)
    assert [r.request_id for r in page] == ["new"] and total == 1


async def test_hourly_counts_come_from_the_answers_counted(
    store: Callable[[Callable[[], float]], RecordStore],
) -> None:
    records = store(lambda: NOW)
    for i, (age, escalate) in enumerate([(0, True), (0, False), (HOUR, True), (5 * HOUR, False)]):
        await records.count_answer(record(f"c{i}", NOW - age, escalate=escalate))
    hours = await records.hourly_counts(TENANT, "support", 6)
    assert [(h.answers, h.escalated) for h in hours] == [
        (1, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (1, 1),
        (2, 1),
    ]
    assert hours[-1].start == (NOW // HOUR) * HOUR
    assert all(h.answers == 0 for h in await records.hourly_counts("globex", "support", 6))


# --- through the app ------------------------------------------------------------------------


@pytest.mark.integration
def test_an_escalated_answer_is_queued_until_feedback_is_recorded(api: TestClient) -> None:
    queue = "/v1/feedback/escalations"
    before = api.get(queue, params={"domain": "support"}).json()["total"]
    answers = [
        api.post("/v1/ner", json={"text": text, "domain": "support", "method": "baner"}).json()
        for text in (ESCALATED_TEXT, PRODUCT_TEXT)
    ]
    assert answers[0]["escalate"] is True
    page = api.get(queue, params={"domain": "support", "limit": 200}).json()
    escalated = [a["request_id"] for a in answers if a["escalate"]]
    assert page["total"] == before + len(escalated)
    assert page["escalations"][0]["request_id"] == escalated[-1]  # newest first
    item = next(e for e in page["escalations"] if e["request_id"] == answers[0]["request_id"])
    assert item["text"] == ESCALATED_TEXT and item["reasons"] == ["required_type_missing"]

    done = api.post(
        "/v1/feedback",
        json={"request_id": item["request_id"], "outcome": "resolved", "entities": []},
    )
    assert done.status_code == 200, done.text
    left = api.get(queue, params={"domain": "support", "limit": 200}).json()
    assert item["request_id"] not in {e["request_id"] for e in left["escalations"]}
    assert left["total"] == page["total"] - 1

    rate = api.get("/v1/feedback/escalation-rate", params={"domain": "support"}).json()
    assert len(rate["hours"]) == 24
    assert rate["hours"][-1]["answers"] >= 2 and rate["hours"][-1]["escalated"] >= 1


@pytest.mark.integration
def test_queue_routes_validate_and_name_unknown_domains(api: TestClient) -> None:
    for path in ("/v1/feedback/escalations", "/v1/feedback/escalation-rate"):
        missing = api.get(path, params={"domain": "nowhere"})
        assert missing.status_code == 404 and "nowhere" in missing.json()["error"]["message"]
        assert api.get(path).status_code == 422
    too_many = api.get("/v1/feedback/escalations", params={"domain": "support", "limit": 1000})
    assert too_many.status_code == 422 and "limit" in too_many.json()["error"]["message"]


@pytest.mark.integration
def test_the_console_is_served_with_a_strict_content_policy(api: TestClient) -> None:
    assert api.get("/console", follow_redirects=False).status_code == 307
    page = api.get("/console/")
    assert page.status_code == 200 and 'id="text"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    for name, kind in (("console.js", "javascript"), ("console.css", "css")):
        asset = api.get(f"/console/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    assert "innerHTML" not in api.get("/console/console.js").text
    for name in ("../settings.py", "router.py", "%2e%2e%2fsettings.py"):
        assert api.get(f"/console/{name}").status_code == 404


def test_the_root_sends_a_browser_to_the_console_and_tells_a_program_where_things_are(
    api: TestClient,
) -> None:
    browser = api.get("/", headers={"accept": "text/html,*/*;q=0.8"}, follow_redirects=False)
    assert browser.status_code == 307 and browser.headers["location"] == "/console/"
    program = api.get("/", headers={"accept": "application/json"})
    assert program.status_code == 200
    assert program.json()["console"] == "/console/"
    assert api.get(program.json()["docs"]).status_code == 200
    assert program.headers.get("x-request-id")
