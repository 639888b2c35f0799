"""Keep this machine's absolute paths out of report pages.

A report is copied around (archived by Jenkins, mailed, published), so pages
show paths relative to the run directory and never the agent's file system:
the run directory becomes relative, the Python installation becomes
`site-packages/` or `python3.X/`, the home folder `~`, and any other absolute
path keeps only its file name behind `…/`.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

# An absolute path: a "/" that does not follow a word character, ":" or "/" (so URLs and
# closing tags are left alone), then at least one folder, then the last part.
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)+(?=[\w.@+~-])")


class PathScrubber:
    """Rewrites absolute paths in page text; `scrub(text)`."""

    def __init__(self, run_dir: Path):
        paths = sysconfig.get_paths()
        named = [(run_dir, ""), (paths["purelib"], "site-packages/"), (paths["platlib"], "site-packages/"),
                 (paths["stdlib"], Path(paths["stdlib"]).name + "/"),
                 (paths["platstdlib"], Path(paths["platstdlib"]).name + "/"),
                 (sys.prefix, "python/"), (sys.base_prefix, "python/"), (Path.home(), "~/")]
        prefixes = {}
        for folder, replacement in named:  # as given and with symbolic links resolved
            for form in (Path(folder).absolute(), Path(folder).resolve()):
                if form != Path(form.anchor):
                    prefixes.setdefault(f"{form}/", replacement)
        # Longest first, so a run directory inside the home folder stays relative.
        self._prefixes = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))

    def scrub(self, text: str) -> str:
        for prefix, replacement in self._prefixes:
            text = text.replace(prefix, replacement)
        return _ABSOLUTE.sub("…/", text)
