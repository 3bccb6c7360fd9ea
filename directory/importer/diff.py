"""The diff of an import: what it creates, updates, moves and deactivates.

Counts are exact; each category keeps only its first few examples, so the diff
of a million rows stays small. Examples name rows by their identifier (student
or teacher number, org-unit code) and a masked name, never by personal data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Change(StrEnum):
    created = "created"
    updated = "updated"
    moved = "moved"
    deactivated = "deactivated"
    unchanged = "unchanged"
    invalid = "invalid"


SHOWN = (Change.created, Change.updated, Change.moved, Change.deactivated)


@dataclass
class Diff:
    """Counts per category; examples for the ``shown`` categories (the changes)."""

    examples_kept: int = 20
    categories: tuple[str, ...] = tuple(c.value for c in Change)
    shown: tuple[str, ...] = tuple(c.value for c in SHOWN)
    counts: dict[str, int] = field(init=False)
    examples: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {c: 0 for c in self.categories}
        self.examples = {c: [] for c in self.shown}

    def add(self, change: str, example: str | Callable[[], str] = "") -> None:
        """Count a change; keep its example while there is room (a callable: made only then)."""
        self.counts[change] += 1
        kept = self.examples.get(change)
        if kept is not None and example and len(kept) < self.examples_kept:
            kept.append(example() if callable(example) else example)

    def merge(self, other: Diff) -> None:
        for change, count in other.counts.items():
            self.counts[change] += count
        for change, kept in other.examples.items():
            room = self.examples_kept - len(self.examples[change])
            self.examples[change].extend(kept[:max(room, 0)])

    @property
    def empty(self) -> bool:
        return not any(self.counts[c] for c in self.shown)

    def summary(self) -> str:
        return ", ".join(f"{c} {self.counts[c]}" for c in self.categories)

    def lines(self) -> list[str]:
        """The diff as text: one heading per non-empty category, then its examples."""
        out: list[str] = []
        for change in self.shown:
            count, kept = self.counts[change], self.examples[change]
            if not count:
                continue
            out.append(f"{change}: {count}")
            out.extend(f"  {example}" for example in kept)
            if count > len(kept):
                out.append(f"  ... and {count - len(kept)} more")
        return out
