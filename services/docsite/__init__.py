"""The docs site's generated pages (``mkdocs.yml`` loads :mod:`services.docsite.hooks`).

Each reference page is rendered at build time from what it describes, never copied: the CLI
from its argparse parser (:mod:`.cli`), the check API from the subscriber's OpenAPI document
(:mod:`.openapi`), the wire schemas from ``schemas/*/*.avsc`` (:mod:`.schemas`), the Python API
by mkdocstrings from the modules of ``services/core``, the runbook index and each runbook's
header from ``deploy/prometheus/alerts.yml`` (:mod:`services.ops.alerts`), and the benchmark
figures from ``bench/results/*.json`` (:mod:`.benchmarks`). The renderers are pure (text in,
Markdown out) and unit-tested.
"""
