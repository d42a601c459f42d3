"""The search page (/ui) and the API docs (/docs) in a real headless Chromium, against the live
services (real HTTP, real Chroma, the packaged model), documents posted through the ingestion API.

Debian's chromium (/usr/bin/chromium; `.ci/run` installs it) driven by Playwright for Python: no
browser download. A missing chromium fails the test, it does not skip it. The screenshot of a
search lands in runs/artifacts/ui-search.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from tests.conftest import ChromaServer
from tests.services.conftest import Api, post_docs
from twotower.index.feedback import FeedbackLog
from twotower.index.store import ChromaStore

# Debian's chromium through Playwright: `make test-browser` (installs chromium first).
pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "runs" / "artifacts" / "ui-search.png"
# Flags for a closed network: no background connections to Google's services, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

DOCS = [
    {
        "id": "ui-eiffel",
        "title": "Eiffel Tower",
        "text": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    },
    {
        "id": "ui-mito",
        "title": "Mitochondria",
        "text": "Mitochondria are organelles that produce most of the chemical energy a cell needs.",
    },
    {
        "id": "ui-photo",
        "title": "Photosynthesis",
        "text": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen by photosynthesis.",
    },
    # Longer than the model's window: searched passage by passage, its best passage is the highlight.
    {
        "id": "ui-long",
        "title": "A ship's log",
        "text": " ".join(
            f"Day {day}: the wind stayed steady from the west and the crew mended sails and ropes."
            for day in range(1, 60)
        )
        + " On the last day the captain wrote that the treasure lies buried beneath the old lighthouse.",
    },
    {
        "id": "ui-markup",
        "title": "<b>Angle brackets</b> in HTML",
        "text": "A <script>alert(1)</script> tag inside a document must be shown as text, never run.",
    },
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium "
            "(`apt-get install chromium`; .ci/run installs it)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Offline:
    """Every request a page makes, and its console errors: all must stay on the services' host."""

    def __init__(self, page: Page, host: str) -> None:
        self.host = host
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request: Request) -> None:
        if urlsplit(request.url).hostname != self.host:
            self.foreign.append(request.url)

    def check(self) -> None:
        assert self.foreign == [], f"the page reached outside the service: {self.foreign}"
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def indexed(ingest_api: Api) -> None:
    assert post_docs(ingest_api, *DOCS).status_code == 200


@pytest.mark.usefixtures("indexed")
def test_search_page_finds_ranks_and_escapes(
    page: Page, query_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = Offline(page, "127.0.0.1")
    version = query_api.http.get("/").json()["model_version"]
    page.goto(f"{query_api.url}/ui")

    # Focus is in the search box on load: typing and Enter search.
    expect(page.locator("#query")).to_be_focused()
    expect(page.locator("#model-version")).to_have_text(version)
    page.keyboard.type("Where is the Eiffel Tower?")
    page.keyboard.press("Enter")

    hits = page.locator("#results > li")
    expect(hits.first).to_be_visible()
    expect(hits.first.locator("h2")).to_contain_text("Eiffel Tower")
    expect(hits.first.locator("mark").first).to_have_text(re.compile("eiffel", re.I))
    expect(hits.first.locator(".doc-id")).to_have_text("ui-eiffel")
    scores = [float(s.split()[1]) for s in page.locator(".score").all_inner_texts()]
    assert len(scores) >= len(DOCS) and scores == sorted(scores, reverse=True)
    expect(page.locator("#status")).to_have_text(re.compile(rf"\d+ results in [\d.]+ ms .* model {version}"))

    # Tab walks from the search box over k, mode and the button onto the first result, visibly.
    for _ in range(4):
        page.keyboard.press("Tab")
    first = hits.first.locator("article")
    expect(first).to_be_focused()
    assert first.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot of the search page: {SCREENSHOT.relative_to(ROOT)}")

    # Document text is text: markup in a title or body is shown, never interpreted.
    page.locator("#query").fill("angle brackets script tag in HTML")
    page.keyboard.press("Enter")
    markup = page.locator("#results > li", has=page.locator(".doc-id", has_text="ui-markup"))
    expect(markup.locator("h2")).to_contain_text("<b>Angle brackets</b>")
    expect(markup.locator(".passage")).to_contain_text("<script>alert(1)</script>")
    assert page.locator("#results b, #results script").count() == 0

    # A long document: its best passage first, the whole text one keypress away.
    page.locator("#query").fill("where is the treasure buried?")
    page.keyboard.press("Enter")
    long_hit = page.locator("#results > li", has=page.locator(".doc-id", has_text="ui-long"))
    expect(long_hit.locator(".label")).to_have_text("Best passage")
    expect(long_hit.locator(".passage").first).to_contain_text("beneath the old lighthouse")
    expect(long_hit.locator("details summary")).to_contain_text("Whole document")
    expect(long_hit.locator("details .passage")).to_contain_text("Day 1: the wind")

    # The mode goes to the API as chosen (hybrid, the API's default, unless changed); the answer renders.
    page.locator("#mode").select_option("dense")
    with page.expect_request(lambda r: r.url.endswith("/search")) as sent:
        page.locator("#query").press("Enter")
    assert sent.value.post_data_json["mode"] == "dense"
    expect(page.locator("#status")).to_contain_text("dense ranking")
    expect(page.locator("#error")).to_be_hidden()
    offline.check()


def test_search_page_shows_api_errors(page: Page, query_api: Api) -> None:
    page.goto(f"{query_api.url}/ui")
    # 422 from the real API: k out of range, named with its limit.
    page.locator("#query").fill("anything")
    page.locator("#k").fill("0")
    page.locator("#query").press("Enter")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Please check the search form")
    expect(error).to_contain_text(re.compile(r"k: .*greater than or equal to 1"))
    expect(error).to_contain_text("Request id:")
    expect(page.locator("#results > li")).to_have_count(0)

    # 503 (Chroma down, nothing indexed): the reason and when to retry.
    page.route(
        "**/search",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "5", "Content-Type": "application/json"},
            body='{"detail": "Chroma is unreachable (query)"}',
        ),
    )
    page.locator("#k").fill("3")
    page.locator("#query").press("Enter")
    expect(error).to_contain_text("Search is unavailable right now")
    expect(error).to_contain_text("Chroma is unreachable (query)")
    expect(error).to_contain_text("Try again in 5 s")


@pytest.mark.parametrize("service", ["query", "ingest"])
def test_swagger_ui_renders_offline(page: Page, service: str, query_api: Api, ingest_api: Api) -> None:
    api = {"query": query_api, "ingest": ingest_api}[service]
    offline = Offline(page, "127.0.0.1")
    page.goto(f"{api.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Two-tower search")
    expect(page.locator(".opblock").first).to_be_visible()
    path = {"query": "/search", "ingest": "/documents"}[service]
    expect(page.locator(".opblock-summary-path", has_text=path).first).to_be_visible()
    offline.check()


@pytest.mark.usefixtures("indexed")
def test_a_click_on_a_result_reaches_the_feedback_store(
    page: Page, query_api: Api, chroma_server: ChromaServer
) -> None:
    offline = Offline(page, "127.0.0.1")
    page.goto(f"{query_api.url}/ui")
    page.keyboard.type("Where is the Eiffel Tower?")
    page.keyboard.press("Enter")
    first = page.locator("#results > li").first
    expect(first.locator(".doc-id")).to_have_text("ui-eiffel")
    with page.expect_response(lambda r: r.url.endswith("/feedback")) as answer:
        first.locator("h2").click()
    assert answer.value.status == 200
    stored_id = answer.value.json()["id"]
    events = FeedbackLog(ChromaStore(chroma_server.host, chroma_server.port, "svc")).events()
    event = next(e for e in events if e.id == stored_id)
    assert event.clicked == ("ui-eiffel",) and event.shown[0] == "ui-eiffel"
    assert event.query == "Where is the Eiffel Tower?" and len(event.shown) >= len(DOCS)
    # A second click on the same result of the same search is not reported again.
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/feedback") else None)
    first.locator("h2").click()
    page.wait_for_timeout(1_000)
    assert sent == []
    offline.check()
