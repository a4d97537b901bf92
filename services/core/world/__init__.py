"""The declared world: agencies, programs, MOUs and topic specs, loaded from ``topics/``.

Everything Concord decides about who may receive what starts here: the governance
compiler turns this world into topics and ACLs, the fan-out routes list entries by its
MOUs, subscribers learn their measures from it. So the world is loaded into frozen
pydantic models (nobody can change it behind the loader's back) and checked as a whole
before anyone acts on it. A typo in an agency id must never silently route a listing
nowhere, or grant a topic to a principal that does not exist.

Layout of ``topics/`` (the loader's root):

``agencies.yaml``
    ``agencies:`` a list of ``{agency_id, name, publishes, implements}``.
``programs.yaml``
    ``programs:`` a list of ``{program_id, owner, list_kind, title, legal_basis, removal}``
    (``removal`` is optional).
``mous/<mou_id>.yaml``
    One file per MOU: ``mou_id`` once at the top and ``versions:``, the list of its
    versions. Keeping every version in one file makes the amendment history of an MOU
    readable in one place and lets the loader check versions against each other.
``topics.yaml``
    ``topics:`` a mapping from topic kind to a template; per-agency kinds may carry
    ``overrides`` for single agencies.

Errors are reported as :class:`~services.core.errors.WorldInvalid` carrying every
:class:`~services.core.problems.Problem` found (file, line, path, reason), shown as
``FILE[:LINE]: path: reason``, e.g.
``mous/mou-food-safety.yaml:21: versions[0].measures[1].implementing_agency: unknown
agency 'securites'``. Every problem found is reported at once, so a person fixes the
files in one round instead of one error per run. Shape problems (missing or unknown
keys, wrong types) are reported before consistency problems, because cross-checking a
half-parsed world only produces noise.

Validity periods are half-open ranges of whole UTC days, ``[valid_from, end)``, where
``end`` is the earlier of ``valid_until`` and ``terminated_on`` (open-ended if neither is
set). ``valid_until`` is therefore the first day an MOU version no longer applies, and
``terminated_on`` the day a termination takes effect. Half-open periods let one
version hand over to the next on the same date with neither a gap nor an overlap.

Misusing the API (a naive datetime, an unknown program or topic kind, a bad namespace)
raises :class:`ValueError`: that is a bug in the caller, not a broken world.

One concept per module: :mod:`.fields` (identifiers and field types), :mod:`.topics`
(topic templates and specs, quotas, retention), :mod:`.model` (agencies, programs, MOUs,
the world), :mod:`.loading` (files to a checked world) and :mod:`.checks` (consistency
across files).
"""

from services.core.principals import UNTHROTTLED
from services.core.world.checks import LineMap
from services.core.world.fields import SUBJECT_FIELDS, FrozenDict
from services.core.world.loading import iter_problems, load_world, parse_world
from services.core.world.model import (
    AGENCY_FILE,
    LIST_KIND_MEASURE,
    MEASURE_KINDS,
    MOU_DIR,
    PROGRAM_FILE,
    TOPIC_FILE,
    Agency,
    Measure,
    Mou,
    Program,
    World,
)
from services.core.world.topics import (
    CO_PARTITIONED,
    TOPIC_KINDS,
    Quotas,
    QuotaValues,
    Retention,
    TopicKind,
    TopicOverride,
    TopicSpec,
    TopicTemplate,
)

__all__ = [
    "AGENCY_FILE",
    "CO_PARTITIONED",
    "LIST_KIND_MEASURE",
    "MEASURE_KINDS",
    "MOU_DIR",
    "PROGRAM_FILE",
    "SUBJECT_FIELDS",
    "TOPIC_FILE",
    "TOPIC_KINDS",
    "UNTHROTTLED",
    "Agency",
    "FrozenDict",
    "LineMap",
    "Measure",
    "Mou",
    "Program",
    "QuotaValues",
    "Quotas",
    "Retention",
    "TopicKind",
    "TopicOverride",
    "TopicSpec",
    "TopicTemplate",
    "World",
    "iter_problems",
    "load_world",
    "parse_world",
]
