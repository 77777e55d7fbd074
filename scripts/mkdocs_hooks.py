"""mkdocs hooks: the normative texts join the site at build time, so they cannot drift.

- Every specs/*.md becomes the page spec/<name>.md, and conformance/INTERPRETING.md and
  ADAPTERS.md become conformance/interpreting.md and adapters.md, read from disk at each build.
- Each requirement definition `**MS-XXX-NNN Title.**` gets the HTML anchor `#MS-XXX-NNN` (the
  bold title becomes a heading of its own, h6, kept out of the toc), so cases and error
  messages can link to `spec/<name>/#MS-XXX-NNN` and a search for the id finds it first.
- On every page, a requirement id written in prose (not in code) links to its definition.
- `<!-- requirement-index -->` in a page becomes the table of every requirement.
- Links in the included files that point outside the site keep their text and lose the link.
- The edit link of an included page opens the repository file it is read from; spec pages
  rank higher in search, so a requirement id finds its definition before its mentions.
- In the search index, each definition's section gets the field `requirement` holding its id
  alone (boosted in mkdocs.yml), so an exact id query finds its rule first (on_post_build).
- A nav section whose first entry is `spec/index.md`, `reference/schemas/index.md` or
  `reference/python/index.md` lists the other pages of that folder after it, so a new spec file,
  schema page or module page needs no edit of mkdocs.yml.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = re.compile(r"^\*\*(MS-[A-Z]+-[0-9]{3}) ([^*\n]+)\*\*", re.MULTILINE)
DEFINITION_LEAD = re.compile(DEFINITION.pattern + r"[ \t]*", re.MULTILINE)
# An id in prose: not part of a word, a link text, a URL fragment, an attribute or bold text.
MENTION = re.compile(r"(?<![\w\[#/\"'=.*-])(MS-[A-Z]+-[0-9]{3})(?![\w\]-])")
LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INDEX_MARKER = "<!-- requirement-index -->"
SPEC_SEARCH_BOOST = 4  # a spec page's sections, against guides that cite a range of ids
LISTED_FOLDERS = ("spec", "reference/schemas", "reference/python")
TITLE = re.compile(r"^# (.+)$", re.MULTILINE)
REQUIREMENT_FIELD = "requirement"  # a search field of mkdocs.yml (plugins: search: fields)


def included_files() -> dict[str, str]:
    """Site page (src_uri) -> repository file it is read from."""
    pages = {f"spec/{p.name}": f"specs/{p.name}" for p in sorted((ROOT / "specs").glob("*.md"))}
    pages["conformance/interpreting.md"] = "conformance/INTERPRETING.md"
    pages["conformance/adapters.md"] = "conformance/ADAPTERS.md"
    return pages


def requirements() -> dict[str, tuple[str, str]]:
    """Requirement id -> (page src_uri, title), in the order the specs define them."""
    found: dict[str, tuple[str, str]] = {}
    for page, source in included_files().items():
        if source.startswith("specs/"):
            text = (ROOT / source).read_text(encoding="utf-8")
            for ident, title in DEFINITION.findall(text):
                found.setdefault(ident, (page, title.strip().rstrip(".")))
    return found


def _anchor_definitions(markdown: str) -> str:
    """Each definition's bold title becomes a heading of its own (h6, outside the toc) with
    the id as its anchor: a link target, and a section of the search index titled by the id,
    so that searching the id finds the rule first (issue 17)."""
    return DEFINITION_LEAD.sub(
        lambda m: f"###### {m.group(1)} {m.group(2).strip()} {{ #{m.group(1)} "
                  ".ms-requirement }\n\n", markdown)


def _rewrite_links(markdown: str, source: str, pages: dict[str, str]) -> str:
    """Links relative to the repository file, made relative to its site page (or dropped)."""
    by_source = {repo: page for page, repo in pages.items()}
    page = next(p for p, s in pages.items() if s == source)

    def fix(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        path, _, fragment = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if resolved in by_source:
            relative = posixpath.relpath(by_source[resolved], posixpath.dirname(page))
            return f"[{text}]({relative}{'#' + fragment if fragment else ''})"
        return text

    return LINK.sub(fix, markdown)


def _link_mentions(markdown: str, page: str, known: dict[str, tuple[str, str]]) -> str:
    """Requirement ids in prose become links to their definitions; code is left alone."""

    def link(match: re.Match[str]) -> str:
        ident = match.group(1)
        if ident not in known:
            return ident
        target = known[ident][0]
        path = "" if target == page else posixpath.relpath(target, posixpath.dirname(page))
        return f"[{ident}]({path}#{ident})"

    out: list[str] = []
    fenced: str | None = None
    for line in markdown.split("\n"):
        opening = FENCE.match(line)
        if fenced is not None:
            if opening and opening.group(1) == fenced:
                fenced = None
            out.append(line)
            continue
        if opening:
            fenced = opening.group(1)
            out.append(line)
            continue
        if line.lstrip().startswith(("#", "<!--", ":::")) or DEFINITION.match(line):
            out.append(line)
            continue
        parts = CODE_SPAN.split(line)
        # split() yields text, ticks, code, text, ticks, code, ...: link only the text parts.
        rebuilt = []
        for index, part in enumerate(parts):
            if index % 3 == 0:
                rebuilt.append(MENTION.sub(link, part))
            elif index % 3 == 1:
                rebuilt.append(part + parts[index + 1] + part)
        out.append("".join(rebuilt))
    return "\n".join(out)


def _index(page: str, known: dict[str, tuple[str, str]]) -> str:
    rows = ["| requirement | title | page |", "|---|---|---|"]
    for ident, (target, title) in known.items():
        path = posixpath.relpath(target, posixpath.dirname(page))
        name = target.removeprefix("spec/").removesuffix(".md")
        rows.append(f"| [{ident}]({path}#{ident}) | {title} | {name} |")
    return "\n".join(rows)


def _title(text: str, fallback: str) -> str:
    """A page's nav title: its first heading without markup, "meterspec" and the version."""
    found = TITLE.search(text)
    title = found.group(1).replace("`", "").strip() if found else fallback
    if title.startswith("meterspec.") or title == "meterspec":  # a module name stays as it is
        return title
    title = re.sub(r"^meterspec (?=[a-z])", "", title)
    title = re.sub(r", version [0-9].*$", "", title)
    return title[:1].upper() + title[1:]


def folder_pages(docs_dir: Path, folder: str) -> list[tuple[str, str]]:
    """(title, src_uri) of the pages listed after folder/index.md: core and errors first, then
    the other spec files by name; schemas by title; modules with the package first."""
    if folder == "spec":
        sources = [(uri, ROOT / source) for uri, source in included_files().items()
                   if uri.startswith("spec/")]
    else:
        sources = [(p.relative_to(docs_dir).as_posix(), p)
                   for p in sorted((docs_dir / folder).glob("*.md")) if p.name != "index.md"]
    pages = [(_title(path.read_text(encoding="utf-8"), uri), uri) for uri, path in sources]
    if folder == "spec":  # the core and its errors first, then the areas built on them
        pages.sort(key=lambda page: (page[1] not in ("spec/core.md", "spec/errors.md"),
                                     page[1]))
    if folder == "reference/schemas":
        pages.sort(key=lambda page: page[0].lower())
    if folder == "reference/python":
        pages.sort(key=lambda page: (page[0] != "meterspec", page[0]))
    return pages


def _expand(nav: Any, docs_dir: Path) -> None:
    if isinstance(nav, list):
        if nav and isinstance(nav[0], str) and nav[0].endswith("/index.md"):
            folder = nav[0].removesuffix("/index.md")
            if folder in LISTED_FOLDERS:
                nav[1:] = [{title: uri} for title, uri in folder_pages(docs_dir, folder)]
        for item in nav:
            _expand(item, docs_dir)
    elif isinstance(nav, dict):
        for value in nav.values():
            _expand(value, docs_dir)


def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    _expand(config.nav, Path(config.docs_dir))
    return config


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for page, source in included_files().items():
        text = (ROOT / source).read_text(encoding="utf-8")
        files.append(File.generated(config, page, content=text))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files,
                     **_: Any) -> str:
    pages = included_files()
    uri = page.file.src_uri
    known = requirements()
    if uri in pages:
        markdown = _rewrite_links(_anchor_definitions(markdown), pages[uri], pages)
        if pages[uri].startswith("specs/"):  # an id's definition outranks its mentions
            page.meta["search"] = {"boost": SPEC_SEARCH_BOOST, **page.meta.get("search", {})}
        if config.repo_url:  # issue 17: edit the repository file the page is read from
            page.edit_url = f"{config.repo_url.rstrip('/')}/edit/main/{pages[uri]}"
    if INDEX_MARKER in markdown:
        markdown = markdown.replace(INDEX_MARKER, _index(uri, known))
    return _link_mentions(markdown, uri, known)


@event_priority(-100)  # after the search plugin (priority 0) has written its index
def on_post_build(config: MkDocsConfig, **_: Any) -> None:
    """Each requirement's section in the search index gets the field `requirement`: its id and
    nothing else. lunr's query lexer splits a query on hyphens whatever the configured
    separator (it copies lunr's default before mkdocs-material sets its own), so "MS-ID-004"
    is asked as the words "ms", "id" and "004", which every rule's title also holds in part;
    mkdocs-material turns lunr's length normalisation off, so the title "MS-CE-004
    Deduplication on (source, id)", with "id" twice, outranked MS-ID-004 (issue 17). In the
    boosted field only the rule itself holds all the words of its id."""
    path = Path(config.site_dir) / "search" / "search_index.json"
    if not path.is_file():
        return
    index = json.loads(path.read_text(encoding="utf-8"))
    pages = {ident: page.removesuffix(".md") + "/" for ident, (page, _) in requirements().items()}
    for doc in index["docs"]:
        page, _, anchor = doc["location"].partition("#")
        if pages.get(anchor) == page:
            doc[REQUIREMENT_FIELD] = anchor
    path.write_text(json.dumps(index, separators=(",", ":")), encoding="utf-8")
