"""/docs and /redoc load everything they need from the app itself, not from a CDN, so they
work offline and behind a proxy that blocks public CDNs."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from reco.settings import ApiSettings, ArchiverSettings, IngestSettings, ProcessorSettings

pytestmark = pytest.mark.api


class _Urls(HTMLParser):
    """The URLs a page makes the browser fetch: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _page_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    # Swagger UI is told where the OpenAPI document is in its inline script.
    return parser.urls + re.findall(r"url: '([^']*)'", html)


def _assert_served_locally(client: TestClient, page: str) -> set[str]:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "https://" not in response.text
    assert "http://" not in response.text
    urls = _page_urls(response.text)
    assert urls, f"{page} names no script or stylesheet"
    types = set()
    for url in urls:
        # A path on this host: not a URL with a scheme, not a scheme-relative "//host/".
        assert re.match(r"/[^/]", url), f"{page} loads {url}"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
        types.add(asset.headers["content-type"].split(";")[0])
    return types


def test_swagger_ui_and_its_assets_come_from_the_app(client: TestClient) -> None:
    types = _assert_served_locally(client, "/docs")
    assert {"text/javascript", "text/css", "application/json"} <= types
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle


def test_redoc_and_its_script_come_from_the_app(client: TestClient) -> None:
    types = _assert_served_locally(client, "/redoc")
    assert "text/javascript" in types
    assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text


def test_the_docs_follow_a_path_prefix_set_by_a_proxy(client: TestClient) -> None:
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in client.get("/docs").text
    prefixed = TestClient(client.app, root_path="/reco").get("/docs")
    assert 'src="/reco/docs/assets/swagger-ui-bundle.js"' in prefixed.text
    assert "url: '/reco/openapi.json'" in prefixed.text


def _ingest() -> FastAPI:
    from reco.services.ingest import create_app

    return create_app(IngestSettings())


def _processor() -> FastAPI:
    from reco.services.processor import create_app

    return create_app(ProcessorSettings())


def _archiver() -> FastAPI:
    from reco.services.archiver import create_app

    return create_app(ArchiverSettings())


def _api() -> FastAPI:
    from reco.services.api import create_app

    return create_app(ApiSettings())


@pytest.mark.parametrize("build", [_ingest, _processor, _archiver, _api], ids=lambda f: f.__name__)
def test_every_role_serves_its_docs_without_a_cdn(build: Callable[[], FastAPI]) -> None:
    # No `with`: the lifespan, which connects to Kafka, Redis and PostgreSQL, does not run;
    # the docs need none of them.
    client = TestClient(build())
    _assert_served_locally(client, "/docs")
    _assert_served_locally(client, "/redoc")
