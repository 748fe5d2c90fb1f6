"""A set of integers kept as sorted, disjoint, half-open ranges [start, end).

How this works: two parallel sorted lists hold the starts and ends; ``bisect``
finds the neighbours of a new range, which is merged with every range it
touches. The receiver keeps the sequence numbers it holds beyond the cumulative
acknowledgement here (they become SACK blocks); the sender keeps what the peer
has selectively acknowledged, so a SACK block repeated in every ACK costs only
its new part. Costs grow with the number of ranges (holes), not of numbers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right


class RangeSet:
    """Sorted disjoint ranges of integers."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def __len__(self) -> int:
        """The number of ranges (not of integers)."""
        return len(self.starts)

    def __bool__(self) -> bool:
        return bool(self.starts)

    def ranges(self, limit: int | None = None) -> list[tuple[int, int]]:
        """The ranges in ascending order, at most ``limit`` of them."""
        count = len(self.starts) if limit is None else min(limit, len(self.starts))
        return [(self.starts[i], self.ends[i]) for i in range(count)]

    @property
    def highest(self) -> int | None:
        """One past the largest member, or None when empty."""
        return self.ends[-1] if self.ends else None

    def add(self, start: int, end: int) -> list[tuple[int, int]]:
        """Add [start, end) and return the sub-ranges that were not members before.

        Args:
            start: first integer of the range.
            end: one past the last integer (``end > start``).
        Returns:
            The newly covered ranges, ascending (empty if all were members).
        """
        starts, ends = self.starts, self.ends
        # First range that ends at or after ``start`` (touching ranges merge too).
        first = bisect_left(ends, start)
        # One past the last range that starts at or before ``end``.
        last = bisect_right(starts, end)
        if first == last:
            starts.insert(first, start)
            ends.insert(first, end)
            return [(start, end)]
        new_parts: list[tuple[int, int]] = []
        cursor = start
        for index in range(first, last):
            if starts[index] > cursor:
                new_parts.append((cursor, min(starts[index], end)))
            cursor = max(cursor, ends[index])
        if cursor < end:
            new_parts.append((cursor, end))
        merged_start = min(start, starts[first])
        merged_end = max(end, ends[last - 1])
        starts[first:last] = [merged_start]
        ends[first:last] = [merged_end]
        return new_parts

    def discard_below(self, limit: int) -> None:
        """Remove every integer smaller than ``limit``."""
        starts, ends = self.starts, self.ends
        cut = bisect_right(ends, limit)
        if cut:
            del starts[:cut]
            del ends[:cut]
        if starts and starts[0] < limit:
            starts[0] = limit
