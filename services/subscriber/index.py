"""The check index: identifier value -> the restrictions held for it, kept compact.

An agency's store can hold millions of active restrictions and must answer a check
in about a microsecond, so the index is columnar instead of one Python object per
restriction (which costs ~700 bytes each and would put a million restrictions far
over a few hundred megabytes):

* ``_head`` maps a normalised identifier value to the first *slot* holding a
  restriction for it; slots of the same value are chained through ``_next``;
* per slot, typed arrays hold the directive's store row id, its *grant* (the
  scheme, measure, kind, MOU and origin agency, interned: thousands of
  directives share one), its validity window as two floats, and where its
  entry id lies in a byte arena;
* freed slots are reused; the arena is rewritten when half of it is garbage.

Checking a value is one dict lookup; a value with nothing held (the usual answer)
costs nothing more.  Validity windows are compared with plain floats at query
time, so an expired restriction never answers, whatever has arrived since.
Nothing here does I/O: :mod:`services.subscriber.store` keeps it in step with
SQLite.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _js

from services.core.identifiers import normalize_identifier

INF = float("inf")
_END = -1


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a restriction says apart from whom and when: shared by many directives."""

    scheme: str
    measure_id: str
    kind: str
    mou_id: str
    origin_agency: str

    @property
    def punitive(self) -> bool:
        return self.kind == "PUNISH"


@dataclass(frozen=True, slots=True)
class Restriction:
    """One APPLY held for an identifier, as a check answers it."""

    scheme: str
    measure_id: str
    kind: str
    mou_id: str
    entry_id: str
    origin_agency: str
    valid_from: float
    valid_until: float | None

    def in_force(self, at: float) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def as_json(self) -> dict[str, object]:
        return {
            "measure_id": self.measure_id,
            "kind": self.kind,
            "mou_id": self.mou_id,
            "entry_id": self.entry_id,
            "origin_agency": self.origin_agency,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until) if self.valid_until is not None else None,
        }

    def json_text(self) -> str:
        """``as_json()`` serialised, without going through ``json.dumps``."""
        until = '"' + iso(self.valid_until) + '"' if self.valid_until is not None else "null"
        return (
            f'{{"measure_id":{_js(self.measure_id)},"kind":"{self.kind}","mou_id":{_js(self.mou_id)},'
            f'"entry_id":{_js(self.entry_id)},"origin_agency":{_js(self.origin_agency)},'
            f'"valid_from":"{iso(self.valid_from)}","valid_until":{until}}}'
        )


class CheckIndex:
    def __init__(self) -> None:
        self._head: dict[str, int] = {}
        self._grants: list[Grant] = []
        self._grant_ids: dict[Grant, int] = {}
        self._row = array("q")
        self._grant = array("I")
        self._vf = array("d")
        self._vu = array("d")
        self._eoff = array("I")
        self._elen = array("B")
        self._next = array("i")
        self._arena = bytearray()
        self._garbage = 0
        self._free: list[int] = []
        self.directives = 0

    def __len__(self) -> int:
        """Slots in use: one per identifier of each directive held."""
        return len(self._row) - len(self._free)

    @property
    def slots(self) -> int:
        """Slots allocated, in use or free for reuse: the length of every column."""
        return len(self._row)

    @property
    def arena_bytes(self) -> int:
        """Bytes of the entry-id arena, freed entries included until it is rewritten."""
        return len(self._arena)

    # --- writing -----------------------------------------------------------------

    def _grant_id(self, g: Grant) -> int:
        gid = self._grant_ids.get(g)
        if gid is None:
            gid = self._grant_ids[g] = len(self._grants)
            self._grants.append(g)
        return gid

    def put(
        self,
        row: int,
        *,
        measure_id: str,
        kind: str,
        mou_id: str,
        origin_agency: str,
        entry_id: str,
        valid_from: float,
        valid_until: float | None,
        identifiers: Iterable[tuple[str, str]],
    ) -> None:
        """Hold directive ``row`` for each (scheme, normalised value) of its target."""
        raw = entry_id.encode()
        if len(raw) > 255:
            raise ValueError(f"entry id longer than 255 bytes: {entry_id[:40]}...")
        off = len(self._arena)
        self._arena += raw
        vu = INF if valid_until is None else valid_until
        for scheme, value in identifiers:
            g = self._grant_id(Grant(scheme, measure_id, kind, mou_id, origin_agency))
            s = self._alloc()
            self._row[s] = row
            self._grant[s] = g
            self._vf[s] = valid_from
            self._vu[s] = vu
            self._eoff[s] = off
            self._elen[s] = len(raw)
            self._next[s] = self._head.get(value, _END)
            self._head[value] = s
        self.directives += 1

    def _alloc(self) -> int:
        if self._free:
            return self._free.pop()
        for icol in (self._row, self._grant, self._eoff, self._elen):
            icol.append(0)
        for fcol in (self._vf, self._vu):
            fcol.append(0.0)
        self._next.append(_END)
        return len(self._row) - 1

    def drop(self, row: int, values: Iterable[str]) -> None:
        """Forget directive ``row``, held under ``values``."""
        for value in dict.fromkeys(values):
            prev, s = _END, self._head.get(value, _END)
            while s != _END:
                nxt = self._next[s]
                if self._row[s] == row:
                    if prev == _END:
                        if nxt == _END:
                            del self._head[value]
                        else:
                            self._head[value] = nxt
                    else:
                        self._next[prev] = nxt
                    self._garbage += self._elen[s]
                    self._row[s] = 0
                    self._next[s] = _END
                    self._free.append(s)
                else:
                    prev = s
                s = nxt
        self.directives -= 1
        if self._garbage > 1 << 20 and self._garbage * 2 > len(self._arena):
            self._compact_arena()

    def _compact_arena(self) -> None:
        arena = bytearray()
        moved: dict[int, int] = {}
        for head in self._head.values():
            s = head
            while s != _END:
                old = self._eoff[s]
                new = moved.get(old)
                if new is None:
                    new = moved[old] = len(arena)
                    arena += self._arena[old : old + self._elen[s]]
                self._eoff[s] = new
                s = self._next[s]
        self._arena = arena
        self._garbage = 0

    # --- reading -----------------------------------------------------------------

    def check(
        self, value: str, *, scheme: str | None = None, measure: str | None = None, at: float
    ) -> list[Restriction]:
        """Restrictions in force at ``at`` for one identifier value."""
        head = self._head
        scheme = scheme or None
        measure = measure or None
        if scheme:
            s = head.get(normalize_identifier(scheme, value), _END)
        else:
            stripped = value.strip()
            s = head.get(stripped.upper(), _END)
            if s == _END:
                s = head.get(stripped, _END)
        if s == _END:
            return []
        out = []
        grants, vf, vu, nxt = self._grants, self._vf, self._vu, self._next
        while s != _END:
            if vf[s] <= at < vu[s]:
                g = grants[self._grant[s]]
                if (scheme is None or g.scheme == scheme) and (measure is None or g.measure_id == measure):
                    off = self._eoff[s]
                    entry = self._arena[off : off + self._elen[s]].decode()
                    until = vu[s]
                    out.append(
                        Restriction(
                            g.scheme,
                            g.measure_id,
                            g.kind,
                            g.mou_id,
                            entry,
                            g.origin_agency,
                            vf[s],
                            None if until == INF else until,
                        )
                    )
            s = nxt[s]
        return out

    def grants(self) -> Sequence[Grant]:
        return tuple(self._grants)
