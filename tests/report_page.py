"""The report's HTML parsed for tests: sections, tables as rows of cell texts, links, text; and the
report as headless Chromium shows it (a screenshot, the DOM it built)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    """The parsed report: section titles, each table (nested ones too) as rows of cell texts, link
    targets, all text. A cell's text includes that of anything inside it."""

    def __init__(self, page):
        super().__init__()
        self.sections, self.tables, self.links, self.text = [], [], [], []
        self._tables, self._cells, self._in_h2 = [], [], False  # open tables and cells, innermost last
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            self._tables.append(self.tables[-1])
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables:
            self._cells.append([])
            self._tables[-1][-1].append(self._cells[-1])
        elif tag == "h2":
            self.sections.append("")
            self._in_h2 = True
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag == "table" and self._tables:
            self._tables.pop()
        elif tag in ("td", "th") and self._cells:
            self._cells.pop()
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_h2:
            self.sections[-1] += data
        for cell in self._cells:
            cell.append(data)

    def rows(self, table):
        return [["".join(cell).strip() for cell in row] for row in table]

    def table_with(self, header):
        """The first table whose header row holds `header`, as rows of joined cell texts."""
        for table in self.tables:
            rows = self.rows(table)
            if rows and header in rows[0]:
                return rows
        raise AssertionError(f"no table with a {header!r} column")


def chromium(url: str, profile: Path, *arguments: str) -> str:
    """Headless Chromium on `url` (a file URI, maybe with a #fragment) with `arguments` (--screenshot=PATH,
    --dump-dom ...); its standard output. Skips the test where Chromium is not installed."""
    import pytest

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium package)")
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *arguments, url],
        check=True, timeout=120, capture_output=True, text=True,
    )
    return done.stdout


def section_page(page: str, section_id: str) -> str:
    """`page` (report.html) cut to one section, with its head (styles): what a screenshot of that section
    shows (headless Chromium's --screenshot ignores a URL's #fragment and shoots the top of the page)."""
    start = page.index(f"<section id={section_id}>")
    return page[:page.index("<body>")] + "<body>" + page[start:page.index("</section>", start)] + "</section></body></html>"


def check_renders_in_chromium(page: Path, shot: Path, profile: Path) -> None:
    """`page` rendered by headless Chromium into the screenshot `shot` (kept: look at it), which must show
    text and charts down the page, not a blank or one band; skips when chromium is not installed."""
    from PIL import Image

    chromium(page.as_uri(), profile, f"--screenshot={shot}", "--window-size=1200,1600")
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    dark_pixels = sum(histogram[:128])
    assert image.size == (1200, 1600)
    assert dark_pixels > 2000, "screenshot looks blank: too few dark (text or chart) pixels"
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 10
    # Text and tables down the page, not one band: many pixel rows hold something other than background.
    rows_with_ink = sum(1 for y in range(image.height) if min(image.crop((0, y, image.width, y + 1)).getdata()) < 128)
    assert rows_with_ink > 400, rows_with_ink
