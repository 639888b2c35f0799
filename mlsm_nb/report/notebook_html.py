"""A notebook's cells as HTML that Jenkins' Content-Security-Policy lets through.

Jenkins serves published and archived HTML with `sandbox; default-src 'none';
img-src 'self'; style-src 'self';`: no script, no inline style, no `data:`
image, nothing from another site. So nbconvert renders with its `basic`
template (cells only, styled by the report's stylesheet), output images are
extracted to files beside the page (nbconvert's ExtractOutputPreprocessor; SVG
only from the runner's cells, shown through `<img>`),
and HTML and Markdown outputs go through nbconvert's SanitizeHTML preprocessor
with ammonia (`nh3`) doing the cleaning: it drops `<script>` and `<style>`
with their content, every `style` attribute, images and link targets.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from html import escape
from pathlib import Path

import nbformat
import nh3
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import ExtractOutputPreprocessor, Preprocessor
from nbconvert.preprocessors.sanitize import SanitizeHTML
from traitlets.config import Config

from ..exceptions import cell_ref
from ..notebook.contract import CONTRACT_TAGS, RUNNER_TAG

# What an output may keep: text structure and tables (pandas); no images or link
# targets (they could leave the report), no forms, no embedded content.
_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl", "dt", "em",
         "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
         "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
         "tr", "u", "ul", "var"}
_ATTRIBUTES = {"*": {"class", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
PRODUCTION_MARK = "mlsm-production-cell"  # the tag of the line that stands for a production cell on a training page
# Terminal colours: nbconvert turns them into style attributes, which the CSP blocks.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Images first: an output that has both a PNG and HTML (an <img> with a data: URI) shows the PNG file.
_IMAGES = ["image/png", "image/jpeg", "image/svg+xml"]
_PRIORITY = [*_IMAGES, "text/html", "text/markdown", "text/plain"]


class ReportSanitizer(SanitizeHTML):
    """nbconvert's SanitizeHTML (which outputs are cleaned, scripts and widgets dropped) with
    ammonia cleaning the HTML; Markdown outputs are converted first, so their HTML is cleaned too."""

    def sanitize_code_outputs(self, outputs):
        for output in outputs:
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/html"] = markdown2html(data.pop("text/markdown"))
        return super().sanitize_code_outputs(outputs)

    def sanitize_html_tags(self, html_str):
        return nh3.clean(html_str, tags=_TAGS, attributes=_ATTRIBUTES,
                         clean_content_tags={"script", "style"}, strip_comments=True, link_rel=None)


class LinkSvgFiles(Preprocessor):
    """Show an extracted SVG file with an `<img>` (with its alt text): nbconvert's template would embed
    the SVG as a `data:` URI, which the CSP blocks. Runs after the sanitizer: this HTML is ours."""

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            filename = output.get("metadata", {}).get("filenames", {}).get("image/svg+xml")
            if filename and "image/svg+xml" in output.get("data", {}):
                alt = output["metadata"].get("image/svg+xml", {}).get("alt", "")
                output["data"] = {"text/html": f'<img src="{escape(filename)}" alt="{escape(alt)}">'}
        return cell, resources


def _exporter() -> HTMLExporter:
    config = Config()
    config.NbConvertBase.display_data_priority = _PRIORITY
    config.HTMLExporter.exclude_anchor_links = True
    config.ExtractOutputPreprocessor.extract_output_types = set(_IMAGES)
    config.SanitizeHTML.safe_output_keys = {"metadata", "text/plain", "text/latex", "application/json", *_IMAGES}
    exporter = HTMLExporter(template_name="basic", config=config)
    exporter.register_preprocessor(ReportSanitizer(config=config), enabled=True)
    exporter.register_preprocessor(ExtractOutputPreprocessor(config=config), enabled=True)
    exporter.register_preprocessor(LinkSvgFiles(config=config), enabled=True)
    return exporter


def training_notebook(source: Path) -> tuple[nbformat.NotebookNode, int]:
    """The notebook at `source` as its author saved it, each production cell (a contract tag) replaced by a
    line that names it (number as JupyterLab counts, tag): its training cells in their places, with their
    saved outputs. Also how many training (untagged code) cells it has."""
    nb = nbformat.read(source, as_version=4)
    cells, training = [], 0
    for index, cell in enumerate(nb.cells):
        tags = [tag for tag in cell.metadata.get("tags", []) if tag in CONTRACT_TAGS]
        if tags:
            named = nbformat.v4.new_markdown_cell(f"{cell_ref(index, tags[0]).capitalize()}: a production cell, "
                                                  "not shown here.")
            named.metadata["tags"] = [PRODUCTION_MARK]  # nbconvert gives it the class celltag_<tag>: muted
            named["id"] = f"production-cell-{index + 1}"  # the same page each time (nbformat's ids are random)
            cells.append(named)
        else:
            training += cell.cell_type == "code"
            cells.append(cell)
    nb.cells = cells
    return nb, training


def render_notebook(source: Path | nbformat.NotebookNode, page: Path, scrub: Callable[[str], str] = str) -> str:
    """The cells of the notebook at `source` (or the notebook itself) as HTML for `page`; its images are
    written as files into a folder beside `page`. `scrub` rewrites the text of sources and outputs
    (the report keeps machine paths out)."""
    nb = copy.deepcopy(source) if isinstance(source, dict) else nbformat.read(source, as_version=4)
    for number, cell in enumerate(nb.cells, 1):
        cell.source = scrub(cell.source)
        for output in cell.get("outputs", []):
            if RUNNER_TAG not in cell.metadata.get("tags", []):
                # Only the runner's own SVG (the histogram) is kept: opened on its own, outside the report
                # page and its CSP, an author's SVG could run script.
                output.get("data", {}).pop("image/svg+xml", None)
            for mime in _IMAGES:
                if mime in output.get("data", {}):  # nbconvert wants alt text; the notebook may have none
                    output.setdefault("metadata", {}).setdefault(mime, {}).setdefault("alt", f"figure of cell {number}")
            if "text" in output:
                output["text"] = ANSI.sub("", scrub(output["text"]))
            if "traceback" in output:
                output["traceback"] = [ANSI.sub("", scrub(line)) for line in output["traceback"]]
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in output.get("data", {}):
                    output["data"][mime] = scrub(output["data"][mime])
    files = f"{page.stem}_files"
    body, resources = _exporter().from_notebook_node(
        nb, resources={"unique_key": "output", "output_files_dir": files})
    for name, content in resources.get("outputs", {}).items():
        target = page.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return body
