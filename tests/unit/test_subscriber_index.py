"""The compact check index on its own: chains of restrictions per identifier, drops
anywhere in a chain, slot reuse and the entry-id arena rewrite."""

from __future__ import annotations

import pytest

from services.subscriber.index import CheckIndex

pytestmark = pytest.mark.unit

T = 1_800_000_000.0


def put(
    ix: CheckIndex, row: int, *values: str, measure: str = "m", entry: str = "e", until: float | None = None
) -> None:
    ix.put(
        row,
        measure_id=measure,
        kind="PUNISH",
        mou_id="mou",
        origin_agency="court",
        entry_id=entry,
        valid_from=T - 10,
        valid_until=until,
        identifiers=[("CN_RIC", v) for v in values],
    )


def rows_of(ix: CheckIndex, value: str) -> list[str]:
    return sorted(r.entry_id for r in ix.check(value, at=T))


@pytest.mark.parametrize("dropped", [1, 2, 3], ids=["tail", "middle", "head"])
def test_drop_anywhere_in_a_chain(dropped: int) -> None:
    ix = CheckIndex()
    for row in (1, 2, 3):
        put(ix, row, "A", entry=f"e{row}")
    ix.drop(dropped, ["A"])
    assert rows_of(ix, "A") == sorted(f"e{r}" for r in (1, 2, 3) if r != dropped)
    assert ix.directives == 2 and len(ix) == 2


def test_directive_under_several_identifiers() -> None:
    ix = CheckIndex()
    put(ix, 1, "A", "B", entry="both")
    put(ix, 2, "B", entry="only-b")
    assert rows_of(ix, "A") == ["both"] and rows_of(ix, "B") == ["both", "only-b"]
    ix.drop(1, ["A", "B"])
    assert rows_of(ix, "A") == [] and rows_of(ix, "B") == ["only-b"]
    assert (ix.directives, len(ix)) == (1, 1)


def test_freed_slots_are_reused_and_the_arena_is_rewritten() -> None:
    ix = CheckIndex()
    for row in range(1, 40_001):
        put(ix, row, f"id{row}", entry=f"entry-{row:08d}-" + "x" * 40)
    for row in range(1, 30_001):
        ix.drop(row, [f"id{row}"])
    assert ix.arena_bytes <= 20_000 * 57  # rewritten when half of it (over 1 MB) was garbage
    assert rows_of(ix, "id30001") == [f"entry-{30001:08d}-" + "x" * 40]
    slots = ix.slots
    for row in range(50_001, 60_001):
        put(ix, row, f"id{row}")
    assert ix.slots == slots  # new restrictions took the freed slots
    assert ix.directives == 20_000


def test_open_ended_and_windowed() -> None:
    ix = CheckIndex()
    put(ix, 1, "A", until=T + 1)
    put(ix, 2, "A", entry="open")
    assert sorted(r.valid_until is None for r in ix.check("A", at=T)) == [False, True]
    assert [r.entry_id for r in ix.check("A", at=T + 1)] == ["open"]


def test_long_entry_id_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 255"):
        put(CheckIndex(), 1, "A", entry="e" * 256)
