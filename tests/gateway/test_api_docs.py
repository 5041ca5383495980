"""The API's pages (/docs, /redoc) work without internet access: every script, style sheet and
icon they load comes from the gateway itself, with the right content type."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres

CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


class Assets(HTMLParser):
    """The URLs a page makes the browser fetch: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def assets_of(html: str) -> list[str]:
    parser = Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("docs")) as api:
        yield api


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_the_page_loads_only_what_the_gateway_serves(api: Api, page: str, script: str) -> None:
    r = api.http.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text
    assert "https://" not in r.text, "the page names an outside address (a CDN, fonts)"
    urls = assets_of(r.text)
    assert any(urlsplit(u).path.endswith(script) for u in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert parts.path.startswith("/"), url
        asset = api.http.get(url)
        assert asset.status_code == 200, url
        suffix = parts.path[parts.path.rfind(".") :]
        media_type = asset.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[suffix], (url, media_type)
        assert len(asset.content) > 100, url


def test_swagger_ui_reads_the_gateways_own_description(api: Api) -> None:
    html = api.http.get("/docs").text
    assert "url: '/openapi.json'" in html
    bundle = next(u for u in assets_of(html) if u.endswith("swagger-ui-bundle.js"))
    assert "SwaggerUIBundle" in api.http.get(bundle).text
    assert api.http.get("/openapi.json").json()["info"]["title"] == "iot-attest gateway"
    assert api.http.get("/docs/oauth2-redirect").status_code == 200


def test_a_missing_asset_is_the_usual_json_404(api: Api) -> None:
    url = next(u for u in assets_of(api.http.get("/docs").text) if u.endswith(".css"))
    r = api.http.get(url.rsplit("/", 1)[0] + "/no-such-file.js")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
