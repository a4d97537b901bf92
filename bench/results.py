"""Where a benchmark leaves its figures: the full run beside its logs, the headline in ``bench/results/``.

``bench/results/<name>.json`` holds the last run's headline figures under the key names the
project tracks (``fanout.listings_per_s``, ``latency.p99_ms_1m_held``, ...), with the machine
and the command that measured them; the documentation's benchmark page is generated from
these files, so a report is never typed by hand.  Every ratio in them was measured against a
baseline run in the same process on the same machine, minutes apart (the machine is shared:
absolute figures move with its load, ratios much less).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, memory, load when the run ended."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_1m_at_end": round(os.getloadavg()[0], 2),
    }


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"http": {"get_per_s": 1.0}}`` -> ``{"http.get_per_s": 1.0}``: numbers only."""
    out: dict[str, float] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def write_headline(name: str, figures: dict[str, float], *, command: str, full: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json``: ``figures`` (rounded), the machine, the command and when."""
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "figures": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sorted(figures.items())},
        "command": command,
        "measured_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": machine(),
        "full_results": str(full) if full else None,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"headline figures: {path}", file=sys.stderr)
    return path
