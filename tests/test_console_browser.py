"""The console in a real headless Chromium against a real ``nerve serve`` with auth on: sign-in
(a wrong key shows the login prompt and never data), Try it (marks), the review queue (500
escalations, paged; one corrected and accepted; a second reviewer refused) and the Domain page
(the accepted example, the escalation chart, uploads). Answers use method=baner (no LLM call).
Screenshots of each page go to $NERVE_SCREENSHOTS_DIR (docs/console/ for the README)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth import add_key
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess
from tests.fixtures.settings import as_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The README's screenshots are refreshed with NERVE_SCREENSHOTS_DIR=docs/console; by default a
# test run writes them outside the checkout, so running the tests never changes tracked files.
SCREENSHOTS = Path(
    os.environ.get("NERVE_SCREENSHOTS_DIR", Path(tempfile.gettempdir()) / "nerve-console")
)
TYPES = {t["name"] for t in SUPPORT_DOMAIN["entity_types"]}  # type: ignore[union-attr]
# Markup that must stay text, and an emoji before the entities: the API counts code points,
# the browser UTF-16 units, so every mark after it checks the conversion.
TRY_TEXT = (
    "Maria Lopez \U0001f61e says her <b>Pixel 8</b> never arrived in Madrid. Order A-1234 & more."
)
# No product in it: the domain requires one, so the answer is escalated (required_type_missing).
REVIEWED = "Priya Nair from Pune is still waiting for her refund."
# Five texts for the 500 queued answers: the other 495 are answered from the cache (fast).
FILLERS = [
    "Thanks for the quick help yesterday!",
    "Hello, I still have not received a reply to my last email.",
    "Can someone from the support team call me back this afternoon?",
    "My account shows the wrong billing address since last week.",
    "Please close my ticket, the problem solved itself.",
]
QUEUED = 500
BIG_WORDS = 10_000


@pytest.fixture(scope="module")
def console_server(
    base_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """``nerve serve`` with auth on, the support domain, and 500 + 1 escalated answers."""
    root = tmp_path_factory.mktemp("console")
    keys = root / "keys.json"
    key = add_key(keys, "acme", name="console-test")
    env = as_env(base_settings)
    env |= {
        "NERVE_AUTH_ENABLED": "true",
        "NERVE_AUTH_API_KEYS_FILE": str(keys),
        "NERVE_MAX_BATCH_ITEMS": "100",
        "NERVE_MAX_TEXT_CHARS": "80000",  # the 10,000-word text
    }
    server = ServerProcess(root / "data", root / "server.log", env)
    server.start(timeout_s=240)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
            added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
            assert added.status_code == 201, added.text
            for start in range(0, QUEUED, 100):
                batch = [
                    {"text": FILLERS[i % len(FILLERS)], "domain": "support", "method": "baner"}
                    for i in range(start, start + 100)
                ]
                answered = client.post("/v1/ner/batch", json=batch)
                assert answered.status_code == 200, answered.text
                assert all(r["escalate"] for r in answered.json()["results"])
            last = client.post(
                "/v1/ner", json={"text": REVIEWED, "domain": "support", "method": "baner"}
            )
            assert last.status_code == 200 and last.json()["escalate"], last.text
        yield server, key
    finally:
        server.stop()


Driver = Any  # selenium's WebDriver (imported lazily: the tests skip without selenium)


def wait_for(driver: Driver, condition: Callable[[Driver], Any], timeout_s: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition)


def by_id(driver: Driver, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def css(driver: Driver, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def visible(driver: Driver, element_id: str) -> bool:
    return bool(by_id(driver, element_id).is_displayed())


def sign_in(driver: Driver, url: str, key: str) -> None:
    driver.get(f"{url}/console/")
    driver.execute_script("sessionStorage.clear()")
    driver.get("about:blank")  # a new document: a hash change alone would not reload the page
    driver.get(f"{url}/console/#try")
    wait_for(driver, lambda d: visible(d, "login"))
    by_id(driver, "api-key").send_keys(key)
    by_id(driver, "login-submit").click()
    wait_for(driver, lambda d: visible(d, "app") and css(d, "#domain option"))


def screenshot(driver: Driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def error_text(driver: Driver) -> str:
    box = by_id(driver, "error")
    return str(box.text) if box.is_displayed() else ""


def test_a_wrong_key_gets_the_login_prompt_never_data(
    browser: Driver, console_server: tuple[ServerProcess, str]
) -> None:
    server, key = console_server
    browser.get(f"{server.url}/console/")
    browser.execute_script("sessionStorage.clear()")
    browser.get("about:blank")
    browser.get(f"{server.url}/console/#review")
    wait_for(browser, lambda d: visible(d, "login"))
    assert not visible(browser, "app")
    by_id(browser, "api-key").send_keys("nrv_not-a-key")
    by_id(browser, "login-submit").click()
    wait_for(browser, lambda d: visible(d, "login-message"))
    assert "not valid" in by_id(browser, "login-message").text
    assert not visible(browser, "app") and not visible(browser, "nav")
    body = browser.execute_script("return document.body.innerText")
    assert "support" not in body and FILLERS[0] not in body
    assert not css(browser, ".domain-select option, #queue li, mark")
    assert browser.execute_script("return sessionStorage.getItem('nerve.apiKey')") is None
    screenshot(browser, "login")

    sign_in(browser, server.url, key)  # the right key opens it; signing out closes it again
    by_id(browser, "logout").click()
    wait_for(browser, lambda d: visible(d, "login"))
    assert not css(browser, ".domain-select option")


def test_try_a_text_and_see_the_marks(
    browser: Driver, console_server: tuple[ServerProcess, str]
) -> None:
    from selenium.webdriver.support.ui import Select

    server, key = console_server
    sign_in(browser, server.url, key)
    Select(by_id(browser, "domain")).select_by_value("support")
    Select(by_id(browser, "method")).select_by_value("baner")
    # Set, not typed: chromedriver types only characters of the BMP (no emoji).
    browser.execute_script("document.getElementById('text').value = arguments[0]", TRY_TEXT)
    by_id(browser, "run").click()
    wait_for(browser, lambda d: visible(d, "try-result") and css(d, "#try-marked mark"))
    marks = [
        (m.get_attribute("data-type"), int(m.get_attribute("data-start")),
         int(m.get_attribute("data-end")), m.text)
        for m in css(browser, "#try-marked mark")
    ]  # fmt: skip
    for entity_type, start, end, text in marks:
        assert entity_type in TYPES
        assert TRY_TEXT[start:end] == text
    assert ("location", "Madrid") in {(t, text) for t, _, _, text in marks}
    # The submitted markup is text: shown as typed, never an element.
    assert by_id(browser, "try-marked").text == TRY_TEXT
    assert not css(browser, "#try-marked b")
    assert "total" in by_id(browser, "try-timings").text
    screenshot(browser, "try")


def test_a_10000_word_text_is_marked_without_freezing_the_page(
    browser: Driver, console_server: tuple[ServerProcess, str]
) -> None:
    server, key = console_server
    sign_in(browser, server.url, key)
    sentence = "Maria Lopez says her Pixel 8 never arrived in Madrid ."  # 10 words
    text = " ".join([sentence] * (BIG_WORDS // 10))
    browser.execute_script("document.getElementById('method').value = 'baner'")
    browser.execute_script("document.getElementById('text').value = arguments[0]", text)
    by_id(browser, "run").click()
    wait_for(
        browser,
        lambda d: error_text(d) or len(css(d, "#try-marked mark")) >= 1000,
        timeout_s=240,
    )
    assert not error_text(browser)
    # The page still answers at once, and every mark sits on its own text.
    started = time.monotonic()
    checked = browser.execute_script(
        """const text = arguments[0]; let bad = 0; const marks = document.querySelectorAll('#try-marked mark');
        for (const m of marks) if (text.slice(+m.dataset.start, +m.dataset.end) !== m.textContent) bad++;
        return [marks.length, bad];""",
        text,
    )
    assert checked[1] == 0 and checked[0] >= 1000
    assert time.monotonic() - started < 5
    assert "more (all are marked in the text)" in by_id(browser, "try-entities").text


def select_text(driver: Driver, container_id: str, needle: str) -> None:
    """Select ``needle`` in the container as a reviewer's mouse would (one text node)."""
    found = driver.execute_script(
        """const [container, needle] = arguments;
        const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const at = node.data.indexOf(needle);
          if (at < 0) continue;
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + needle.length);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          return true;
        }
        return false;""",
        by_id(driver, container_id),
        needle,
    )
    assert found, f"{needle!r} is not unmarked text of #{container_id}"


def queue_total(driver: Driver) -> int:
    return int(by_id(driver, "review-count").text.split()[0])


def test_review_one_escalation_and_see_the_example_in_the_domain(
    browser: Driver, console_server: tuple[ServerProcess, str]
) -> None:
    from selenium.webdriver.support.ui import Select

    server, key = console_server
    sign_in(browser, server.url, key)
    browser.get(f"{server.url}/console/#review")
    wait_for(browser, lambda d: css(d, "#queue li.queue-item"))
    total = queue_total(browser)
    assert total >= QUEUED + 1
    assert by_id(browser, "queue-range").text == f"1–20 of {total}"
    assert len(css(browser, "#queue li.queue-item")) == 20
    by_id(browser, "queue-next").click()
    wait_for(browser, lambda d: by_id(d, "queue-range").text == f"21–40 of {total}")
    by_id(browser, "queue-prev").click()
    wait_for(browser, lambda d: by_id(d, "queue-range").text.startswith("1–20"))

    newest = css(browser, "#queue li.queue-item")[0]
    assert REVIEWED in newest.text and "required_type_missing" in newest.text
    newest.find_element("css selector", "button.open-review").click()
    wait_for(browser, lambda d: visible(d, "editor"))
    assert by_id(browser, "editor-text").text == REVIEWED
    while css(browser, "#editor-entities button.remove-span"):
        css(browser, "#editor-entities button.remove-span")[0].click()
    for needle, entity_type in (("Priya Nair", "person"), ("Pune", "location")):
        select_text(browser, "editor-text", needle)
        Select(by_id(browser, "review-type")).select_by_value(entity_type)
        by_id(browser, "add-span").click()
        wait_for(browser, lambda d, n=needle: n in [m.text for m in css(d, "#editor-text mark")])
    marks = {
        m.text: (m.get_attribute("data-type"), int(m.get_attribute("data-start")))
        for m in css(browser, "#editor-text mark")
    }
    assert marks == {"Priya Nair": ("person", 0), "Pune": ("location", 16)}
    screenshot(browser, "review")
    by_id(browser, "accept").click()
    wait_for(browser, lambda d: visible(d, "notice") and "Recorded as" in by_id(d, "notice").text)
    wait_for(browser, lambda d: queue_total(d) == total - 1)
    assert REVIEWED not in by_id(browser, "queue").text

    # A second reviewer on the same answer: the API's claim refuses it, the console says so.
    item = css(browser, "#queue li.queue-item")[0]
    request_id = item.get_attribute("data-request-id")
    item.find_element("css selector", "button.open-review").click()
    wait_for(browser, lambda d: visible(d, "editor"))
    other = httpx.post(
        f"{server.url}/v1/feedback",
        json={"request_id": request_id, "outcome": "resolved", "entities": []},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert other.status_code == 200, other.text
    by_id(browser, "accept").click()
    wait_for(browser, lambda d: "already recorded" in error_text(d))
    wait_for(browser, lambda d: queue_total(d) == total - 2)
    assert not visible(browser, "editor")

    browser.get(f"{server.url}/console/#domain")
    wait_for(browser, lambda d: css(d, "#examples li.example"))
    example = next(li for li in css(browser, "#examples li.example") if REVIEWED in li.text)
    marked = {
        (m.text, m.get_attribute("data-type"))
        for m in example.find_elements("css selector", "mark")
    }
    assert marked == {("Priya Nair", "person"), ("Pune", "location")}
    # The accepted correction and the other reviewer's report both became examples.
    wait_for(
        browser, lambda d: f"{len(SUPPORT_EXAMPLES) + 2} examples" in by_id(d, "domain-meta").text
    )
    types = {row.text.split()[0] for row in css(browser, "#domain-types tbody tr")}
    assert types == TYPES
    assert len(css(browser, "#rate-chart rect.bar")) == 24
    assert "answers escalated" in by_id(browser, "rate-summary").text
    screenshot(browser, "domain")


def test_uploads_show_the_apis_message_and_store_nothing_partial(
    browser: Driver, console_server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    server, key = console_server
    sign_in(browser, server.url, key)
    browser.get(f"{server.url}/console/#domain")
    wait_for(browser, lambda d: css(d, "#examples li.example"))
    before = by_id(browser, "examples-range").text

    broken = tmp_path / "broken.conll"  # the second sentence names a type the domain lacks
    broken.write_text("Anna\tB-person\nBerg\tI-person\n\nOslo\tB-planet\n")
    by_id(browser, "upload-file").send_keys(str(broken))
    by_id(browser, "upload").click()
    wait_for(browser, lambda d: "planet" in error_text(d))
    assert by_id(browser, "examples-range").text == before

    good = tmp_path / "good.json"
    good.write_text(
        json.dumps({"examples": [{"text": "Lena Vogt loves her Kindle.", "entities": [
            {"start": 0, "end": 9, "type": "person"}, {"start": 20, "end": 26, "type": "product"}
        ]}]})
    )  # fmt: skip
    by_id(browser, "upload-file").send_keys(str(good))
    by_id(browser, "upload").click()
    wait_for(browser, lambda d: "1 examples added" in by_id(d, "notice").text)
    wait_for(browser, lambda d: "Lena Vogt" in by_id(d, "examples").text)

    uploaded = next(li for li in css(browser, "#examples li.example") if "Lena Vogt" in li.text)
    uploaded.find_element("css selector", "button.delete-example").click()
    browser.switch_to.alert.accept()  # the console asks before deleting
    wait_for(browser, lambda d: "deleted" in by_id(d, "notice").text)
    wait_for(browser, lambda d: "Lena Vogt" not in by_id(d, "examples").text)
    assert by_id(browser, "examples-range").text == before


def test_delete_a_domain_from_the_console(
    browser: Driver, console_server: tuple[ServerProcess, str]
) -> None:
    from selenium.webdriver.support.ui import Select

    server, key = console_server
    headers = {"Authorization": f"Bearer {key}"}
    scratch = {**SUPPORT_DOMAIN, "name": "scratch", "required_types": []}
    assert httpx.post(f"{server.url}/v1/domains", json=scratch, headers=headers).status_code == 201
    sign_in(browser, server.url, key)
    browser.get(f"{server.url}/console/#domain")
    wait_for(browser, lambda d: css(d, "#domain-page-name option[value=scratch]"))
    Select(by_id(browser, "domain-page-name")).select_by_value("scratch")
    wait_for(browser, lambda d: "0 examples" in by_id(d, "domain-meta").text)
    by_id(browser, "delete-domain").click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: "Domain scratch deleted" in by_id(d, "notice").text)
    wait_for(browser, lambda d: not css(d, ".domain-select option[value=scratch]"))
    gone = httpx.get(f"{server.url}/v1/domains/scratch", headers=headers)
    assert gone.status_code == 404
