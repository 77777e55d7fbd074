"""The documentation site in a real browser (issue 17): every page's code blocks fit or wrap at
1280 px (no block scrolls sideways, the page does not either), tables are readable at 390 px,
and searching a requirement id finds its rule first. Headless Chromium over the DevTools
protocol (tests/headless.py); the module is skipped, saying why, where Chromium is not
installed."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from headless import Browser, chromium

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 1280
SITE_URL = "https://meterspec.dev/"
# Code blocks (and the page) wider than their box, as "path: count".
OVERFLOW = """(() => {
  const wide = [...document.querySelectorAll('.md-content pre > code')]
    .filter((code) => code.scrollWidth > code.clientWidth + 1);
  const page = document.documentElement.scrollWidth > window.innerWidth + 1;
  const first = wide.length ? wide[0].textContent.slice(0, 80) : '';
  return {blocks: wide.length, page: page, first: first};
})()"""
RESULTS = """(() => {
  const links = [...document.querySelectorAll('.md-search-result__item a')].map((a) => a.href);
  return links.length ? links : null;
})()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    if executable is None:
        pytest.skip("Chromium is not installed here (apt-get install chromium): the site is "
                    "not measured in a browser")
    opened = Browser(executable, width=WIDTH)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[str]:
    """The site built once and served on 127.0.0.1; its base URL."""
    folder = tmp_path_factory.mktemp("site") / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                            str(folder)], cwd=ROOT, capture_output=True, text=True, check=False,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


def _pages(base: str) -> list[str]:
    """Every page of the sitemap, on the local server."""
    with urllib.request.urlopen(base + "sitemap.xml", timeout=60) as answer:
        sitemap = ElementTree.fromstring(answer.read())
    spaces = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locations = [loc.text or "" for loc in sitemap.findall("s:url/s:loc", spaces)]
    assert locations and all(loc.startswith(SITE_URL) for loc in locations)
    return [base + loc.removeprefix(SITE_URL) for loc in locations]


def test_code_blocks_fit_or_wrap_at_1280_px_on_every_page(browser: Browser, site: str) -> None:
    pages = _pages(site)
    assert len(pages) > 50
    wide = {}
    for page in pages:
        browser.open(page)
        found = browser.evaluate(OVERFLOW)
        if found["blocks"] or found["page"]:
            wide[page.removeprefix(site)] = found
    assert wide == {}


MOBILE = 390
NARROW = """(() => ({
  page: document.documentElement.scrollWidth > window.innerWidth + 1,
  unwrapped: [...document.querySelectorAll('.md-typeset table:not([class])')]
    .filter((table) => !table.closest('.md-typeset__scrollwrap')).length,
  clipped: [...document.querySelectorAll('.md-typeset td, .md-typeset th')]
    .filter((cell) => cell.scrollWidth > cell.clientWidth + 1).length,
}))()"""


def test_tables_are_readable_on_a_phone(browser: Browser, site: str) -> None:
    """At 390 px, every page with a table: the page does not scroll sideways, each table
    scrolls inside its own wrapper, and no cell clips its text."""
    browser.call("Emulation.setDeviceMetricsOverride", width=MOBILE, height=800,
                 deviceScaleFactor=1, mobile=True)
    try:
        wrong = {}
        for page in _pages(site):
            browser.open(page)
            if not browser.evaluate("document.querySelector('.md-typeset table') !== null"):
                continue
            found = browser.evaluate(NARROW)
            if found["page"] or found["unwrapped"] or found["clipped"]:
                wrong[page.removeprefix(site)] = found
        assert wrong == {}
    finally:
        browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=800,
                     deviceScaleFactor=1, mobile=False)


def test_the_measure_sees_a_clipped_block(browser: Browser, site: str) -> None:
    """Without the wrapping rule (docs/stylesheets/extra.css) the CLI reference's long usage
    lines overflow their block: the measure above can fail."""
    browser.open(site + "reference/cli/")
    browser.evaluate("(() => { const s = document.createElement('style'); s.textContent = "
                     "'.md-typeset pre > code { white-space: pre !important; "
                     "overflow-wrap: normal !important }'; document.head.append(s); })()")
    assert browser.evaluate(OVERFLOW)["blocks"] > 0


# Every requirement id is searched by typing it into the search box of one open page (a page
# load per id would rebuild the index 233 times); a lower-case id too, as a reader may type it.
QUERY = """((text) => {
  const input = document.querySelector('[data-md-component=search-query]');
  input.value = text;
  input.dispatchEvent(new KeyboardEvent('keyup'));
})"""
LOWER_CASE = "ms-bil-004"


def _definitions() -> list[tuple[str, str]]:
    """(spec file stem, id) of every requirement definition."""
    return [(spec.stem, ident) for spec in sorted((ROOT / "specs").glob("*.md"))
            for ident in re.findall(r"^\*\*(MS-[A-Z]+-[0-9]{3}) ",
                                    spec.read_text(encoding="utf-8"), re.MULTILINE)]


def test_a_requirement_id_finds_its_rule_first(browser: Browser, site: str) -> None:
    """Each id's first section result is its definition, for all of them: the query lexer
    splits "MS-ID-004" into three words, and the title "MS-CE-004 Deduplication on (source,
    id)" used to outrank MS-ID-004 (scripts/mkdocs_hooks.py, on_post_build, says why)."""
    definitions = _definitions()
    assert len(definitions) > 200
    stem_of = {ident: stem for stem, ident in definitions}
    wanted = [*definitions, (stem_of[LOWER_CASE.upper()], LOWER_CASE)]
    browser.open(site)
    wrong = {}
    for stem, ident in wanted:
        browser.evaluate(f"{QUERY}('')")  # no results left from the previous id
        browser.wait_for(f"{RESULTS} === null")
        browser.evaluate(f"{QUERY}({ident!r})")
        links = browser.wait_for(RESULTS, timeout=60)
        first_section = next((link for link in links if "#" in link), "")
        page, anchor = first_section.split("?")[0], first_section.rsplit("#", 1)[-1]
        if (page, anchor) != (f"{site}spec/{stem}/", ident.upper()):
            wrong[ident] = links[:3]
    assert wrong == {}, f"{len(wrong)} of {len(wanted)} ids find another section first"
