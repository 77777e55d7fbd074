"""The documentation site builds with `mkdocs build --strict`, links every requirement id, and
its generated parts (scripts/docgen.py) match their sources: docs/about.md says how."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = re.compile(r"^\*\*(MS-[A-Z]+-[0-9]{3}) ", re.MULTILINE)
DOCGEN = ROOT / "scripts" / "docgen.py"


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Never --quiet: it drops warnings before strict mode counts them, so nothing would fail.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(config), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole site, built once for this module."""
    folder = tmp_path_factory.mktemp("docs") / "site"
    result = _mkdocs(ROOT / "mkdocs.yml", folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_the_site_builds_strict(site: Path) -> None:
    for page in ("index.html", "spec/core/index.html", "reference/schemas/plan/index.html",
                 "reference/cli/index.html", "reference/python/meterspec/index.html",
                 "conformance/adapters/index.html", "cookbook/seats/index.html",
                 "search/search_index.json"):
        assert (site / page).is_file(), page


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The build above can fail: the same configuration with one bad link does."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "cookbook" / "index.md"
    page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("- scripts/mkdocs_hooks.py", f"- {ROOT / 'scripts/mkdocs_hooks.py'}")
    config = config.replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    config = re.sub(r"\nwatch:\n(  - .*\n)+", "\n", config)  # serve only; relative paths
    (tmp_path / "mkdocs.yml").write_text(config)
    result = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def _defined() -> dict[str, list[str]]:
    return {p.stem: DEFINITION.findall(p.read_text(encoding="utf-8"))
            for p in sorted((ROOT / "specs").glob("*.md"))}


def test_every_requirement_has_an_anchor_on_its_spec_page(site: Path) -> None:
    defined = _defined()
    assert sum(len(ids) for ids in defined.values()) > 100
    for stem, ids in defined.items():
        html = (site / "spec" / stem / "index.html").read_text(encoding="utf-8")
        anchors = set(re.findall(r'id="(MS-[A-Z]+-[0-9]{3})"', html))
        missing = [i for i in ids if i not in anchors]
        assert not missing, f"spec/{stem}: no anchor for {missing}"


def test_each_requirement_id_is_a_search_field_of_its_definition(site: Path) -> None:
    """The field scripts/mkdocs_hooks.py adds so that an exact id query finds its rule first
    (tests/test_docs_browser.py asks a browser): on each definition's section, nowhere else,
    boosted above titles."""
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    fields = index["config"]["fields"]
    assert fields["requirement"]["boost"] > fields["title"]["boost"]
    tagged = [(doc["requirement"], doc["location"]) for doc in index["docs"]
              if "requirement" in doc]
    assert sorted(tagged) == sorted((ident, f"spec/{stem}/#{ident}")
                                    for stem, ids in _defined().items() for ident in ids)


def test_requirement_mentions_link_to_their_definitions(site: Path) -> None:
    """An id in prose links to the page that defines it, on other pages too."""
    html = (site / "concepts" / "aggregations" / "index.html").read_text(encoding="utf-8")
    assert 'href="../../spec/core/#MS-AGG-011"' in html
    index = (site / "spec" / "index.html").read_text(encoding="utf-8")
    for stem, ids in _defined().items():
        for ident in ids:
            assert f'href="{stem}/#{ident}"' in index, ident


def test_included_pages_show_the_repository_text(site: Path) -> None:
    """The spec and the guides are read at build time: a sentence of each is on the site."""
    for source, page in (("specs/core.md", "spec/core/index.html"),
                         ("conformance/ADAPTERS.md", "conformance/adapters/index.html"),
                         ("conformance/INTERPRETING.md", "conformance/interpreting/index.html")):
        text = (ROOT / source).read_text(encoding="utf-8")
        heading = re.search(r"^## (.+)$", text, re.MULTILINE)
        assert heading is not None
        words = heading.group(1).replace("`", "").split("(")[0].strip()
        assert words in (site / page).read_text(encoding="utf-8"), (source, words)


def test_every_schema_and_module_is_in_the_nav(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    for schema in sorted((ROOT / "schemas").glob("*.schema.json")):
        name = schema.name.removesuffix(".schema.json")
        assert f"reference/schemas/{name}/" in html, name
    for spec in sorted((ROOT / "specs").glob("*.md")):
        assert f"spec/{spec.stem}/" in html, spec.name


def _docgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DOCGEN), *args], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_generated_docs_are_up_to_date() -> None:
    result = _docgen("--check")
    assert result.returncode == 0, (
        "regenerate with `python scripts/docgen.py`:\n" + result.stdout + result.stderr)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the generator reads and writes."""
    for folder in ("docs", "schemas", "specs", "examples/seats-twa",
                   "examples/monthly-invoice"):  # scripts/pictures.py reads it too
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("node_modules"))
    (tmp_path / "src" / "meterspec").mkdir(parents=True)
    for module in (ROOT / "src" / "meterspec").glob("*.py"):
        shutil.copy(module, tmp_path / "src" / "meterspec" / module.name)
    assert _docgen("--check", "--root", str(tmp_path)).returncode == 0
    return tmp_path


def test_the_drift_check_sees_a_changed_schema(tree: Path) -> None:
    schema = tree / "schemas" / "event-payload.schema.json"
    document = json.loads(schema.read_text())
    document["description"] = "A changed description."
    schema.write_text(json.dumps(document))
    result = _docgen("--check", "--root", str(tree))
    assert result.returncode == 1
    assert "docs/reference/schemas/event-payload.md" in result.stdout
    assert _docgen("--root", str(tree)).returncode == 0  # regenerating fixes it
    assert "A changed description." in (
        tree / "docs" / "reference" / "schemas" / "event-payload.md").read_text()
    assert _docgen("--check", "--root", str(tree)).returncode == 0


def test_the_drift_check_sees_a_hand_edit_and_keeps_text_after_the_markers(tree: Path) -> None:
    page = tree / "docs" / "reference" / "cli.md"
    edited = page.read_text().replace("usage: meterspec meter", "usage: meterspek meter")
    page.write_text(edited + "\nA note.\n")
    result = _docgen("--check", "--root", str(tree))
    assert result.returncode == 1 and "docs/reference/cli.md" in result.stdout
    assert _docgen("--root", str(tree)).returncode == 0
    assert page.read_text().endswith("<!-- END GENERATED -->\n\nA note.\n")
    assert "meterspek" not in page.read_text()


def test_the_drift_check_sees_a_changed_example_and_new_and_removed_sources(tree: Path) -> None:
    events = tree / "examples" / "seats-twa" / "events.ndjson"
    events.write_text(events.read_text().replace('"seats":"15"', '"seats":"16"'))
    (tree / "src" / "meterspec" / "brand_new.py").write_text('"""A new module."""\n')
    (tree / "schemas" / "problem.schema.json").unlink()
    result = _docgen("--check", "--root", str(tree))
    assert result.returncode == 1
    for stale in ("docs/assets/seats-twa.svg", "docs/reference/python/meterspec.brand_new.md",
                  "docs/reference/schemas/problem.md"):
        assert stale in result.stdout, stale


def test_the_picture_shows_the_hand_computed_readings() -> None:
    """The averages drawn are those of examples/seats-twa/expected-readings.json (hand-made)."""
    svg = (ROOT / "docs" / "assets" / "seats-twa.svg").read_text()
    drawn = re.findall(r">average (-?[0-9.]+)</text>", svg)
    expected = json.loads((ROOT / "examples" / "seats-twa" / "expected-readings.json").read_text())
    assert drawn == [r["measurement"]["quantity"] for r in expected]
    for reading in expected:
        assert f">{reading['subject']}</text>" in svg
    # acme's levels, from the example's README: 10 carried in, then 15 and 13.
    assert [Decimal(v) for v in re.findall(r'fill="#3f51b5" stroke="#ffffff"[^>]*>([0-9.]+)<',
                                           svg)][:3] == [10, 15, 13]


def test_the_cli_reference_shows_every_command() -> None:
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for command in ("meter", "aggregate", "run", "validate", "conformance run"):
        assert f"`meterspec {command}`" in page, command


def test_the_readme_says_how_to_serve_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "mkdocs serve" in readme
    first_screen = readme.split("## ")[0]
    assert first_screen.count("```sh") == 2 and "mkdocs" not in first_screen


# ---------------------------------------------------------------- found (issue 17)

def test_the_sitemap_lists_every_page_at_the_site_url(site: Path) -> None:
    """site_url gives the sitemap its entries: one per page, at https://meterspec.dev/."""
    from xml.etree import ElementTree

    spaces = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    sitemap = ElementTree.parse(site / "sitemap.xml")
    locations = {loc.text for loc in sitemap.findall("s:url/s:loc", spaces)}
    pages = {"https://meterspec.dev/" + (p.parent.relative_to(site).as_posix() + "/")
             .removeprefix("./") for p in site.rglob("index.html")
             if "assets" not in p.parts}
    assert len(pages) > 50
    assert locations == pages


def test_pages_link_to_the_repository_and_to_their_source(site: Path) -> None:
    """repo_url on every page; an edit link to the file a page is made from: docs/ for the
    site's own pages, specs/ and conformance/ for the texts the hook reads."""
    repo = "https://github.com/meterspec/meterspec"
    for page, source in (("concepts/windows", "docs/concepts/windows.md"),
                         ("spec/core", "specs/core.md"),
                         ("conformance/adapters", "conformance/ADAPTERS.md")):
        html = (site / page / "index.html").read_text(encoding="utf-8")
        assert f'href="{repo}"' in html, page
        assert f'href="{repo}/edit/main/{source}"' in html, page
