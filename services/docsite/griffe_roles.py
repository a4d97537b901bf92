"""A griffe extension (mkdocstrings' loader): Concord's docstrings name code with Sphinx roles
(``:class:`Keyring```, ``:func:`~services.core.merkle.root```); on the site they become code
spans, the name as written (``~`` keeps the last part, as Sphinx shows it)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const|term):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")


def plain(docstring: str) -> str:
    """``docstring`` with each Sphinx role replaced by a code span of the name it shows."""

    def show(m: re.Match[str]) -> str:
        tilde, text, target = m.group(1), m.group(2).strip(), m.group(3)
        if target is None and tilde:
            text = text.rsplit(".", 1)[-1]
        return f"`{text}`"

    return ROLE.sub(show, docstring)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
