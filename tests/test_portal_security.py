"""The portal's configuration as a browser meets it (docs/security.md, ASVS V14 and V5): the headers on
every answer, pages with no inline script or style for the Content-Security-Policy to forbid, nothing
from a device rendered unescaped, and errors as pages that echo nothing back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.signing_in import TestPortal, make_test_portal
from web.templating import templates

WEB = Path(__file__).resolve().parent.parent / "web"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPortal]:
    yield make_test_portal(tmp_path_factory.mktemp("security") / "station")


@pytest.fixture(scope="module")
def investigator(portal: TestPortal) -> TestClient:
    return portal.signed_in_client("ivy", "investigator")


def directives(answer_csp: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in answer_csp.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/sign-in", "/search", "/account/sign-ins", "/no-such-page"])
def test_every_answer_carries_the_security_headers(investigator: TestClient, path: str) -> None:
    answer = investigator.get(path)
    csp = directives(answer.headers["content-security-policy"])
    assert csp["default-src"] == "default-src 'none'"
    assert csp["script-src"] == "script-src 'self'", "no inline script, no eval, no other origin"
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["form-action"] == "form-action 'self'"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    if not answer.is_redirect:  # a signed-in person's /sign-in sends them on
        assert answer.headers["content-type"].startswith("text/html; charset=utf-8")


def test_plain_http_gets_no_hsts(portal: TestPortal) -> None:
    # HSTS over plain HTTP is ignored by browsers and would only mislead whoever reads the headers
    from web.app import create_app

    answer = TestClient(create_app(portal.portal), base_url="http://testserver").get("/sign-in")
    assert "strict-transport-security" not in answer.headers


def test_static_files_may_be_cached_but_not_sniffed(investigator: TestClient) -> None:
    answer = investigator.get("/static/portal.css")
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers.get("cache-control") != "no-store"


TEMPLATES = sorted((WEB / "templates").glob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_have_no_inline_script_style_or_handlers(template: Path) -> None:
    """What the Content-Security-Policy would block in a browser must not be written at all: a page
    that relies on it would break, and one that works around it would weaken the policy."""
    text = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert not re.search(r"\sstyle\s*=", text), "style attribute"
    assert "<style" not in text, "inline <style>"
    assert not re.search(r"\son[a-z]+\s*=", text), "event-handler attribute"
    assert "javascript:" not in text.lower()
    assert not re.search(r"\|\s*safe\b", text), "|safe bypasses autoescaping"
    assert "autoescape false" not in text


def test_every_template_is_autoescaped() -> None:
    for template in TEMPLATES:
        assert templates.env.get_template(template.name).environment.autoescape(template.name) is True


def test_no_code_marks_text_as_safe_markup() -> None:
    for source in WEB.rglob("*.py"):
        text = source.read_text()
        assert "Markup(" not in text and "markupsafe" not in text, source


def test_unknown_pages_and_methods_are_pages_not_framework_json(investigator: TestClient) -> None:
    missing = investigator.get("/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "There is no such page." in missing.text
    wrong_method = investigator.put("/search")
    assert wrong_method.status_code == 405 and "allow" in {n.lower() for n in wrong_method.headers}


def test_a_request_the_routes_cannot_accept_is_one_line_that_echoes_nothing(portal: TestPortal) -> None:
    client = portal.client()
    secret = "correct-horse-battery-" + "x" * 1200  # too long for the password field
    answer = client.post("/sign-in", data={"user": "ivy", "password": secret, "totp": "123456"})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert "password: String should have at most" in answer.text
    assert secret not in answer.text and "correct-horse" not in answer.text
