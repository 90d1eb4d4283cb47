"""Identity links (docs/design.md §7), pure: which id each id's records count for.

An `alias` links its `previous_id` to its `user_id`; an `unmerge` command for an id leaves it
on its own. For each id, the latest of its links by (time, id) decides (`active`). Following
active links from an id leads to its *root*, the id its records count for; where active
links close a cycle, the cycle's latest link counts as inactive (`roots`). Deletes reach
further than merges: along every alias ever sent, active or not (`components`).

Everything here is a function of the set of links: any order, any duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Link:
    """One alias (`target` the id merged into) or unmerge (`target` None) of `previous`,
    at (`at`, `link_id`): the event's timestamp and id, or the command's issued_at and id."""

    previous: str
    at: int
    link_id: str
    target: str | None

    @property
    def order(self) -> tuple[int, str, int]:
        # an alias and an unmerge with the same time and id: the unmerge counts (never a tie)
        return (self.at, self.link_id, 0 if self.target is not None else 1)


def active(links: Iterable[Link]) -> dict[str, Link]:
    """previous id -> its alias in force (ids whose latest link is an unmerge are absent)."""
    latest: dict[str, Link] = {}
    for link in links:
        now = latest.get(link.previous)
        if now is None or link.order > now.order:
            latest[link.previous] = link
    return {p: link for p, link in latest.items() if link.target is not None}


def broken(merges: dict[str, Link]) -> set[str]:
    """The previous ids whose alias in force closes a cycle and is the cycle's latest: they
    stand on their own."""
    out: set[str] = set()
    done: set[str] = set()
    for start in merges:
        path: list[str] = []
        on_path: set[str] = set()
        at: str | None = start
        while at is not None and at in merges and at not in done and at not in on_path:
            path.append(at)
            on_path.add(at)
            at = merges[at].target
        if at is not None and at in on_path:  # a cycle: from `at` to the end of the path
            cycle = path[path.index(at) :]
            out.add(max(cycle, key=lambda p: merges[p].order))
        done.update(path)
    return out


def roots(links: Iterable[Link]) -> dict[str, str]:
    """id -> the id its records count for, for every id that is merged into another (ids
    absent here are their own root)."""
    merges = active(links)
    for previous in broken(merges):
        del merges[previous]
    found: dict[str, str] = {}

    def root(at: str) -> str:
        chain = []
        while at in merges and at not in found:
            chain.append(at)
            target = merges[at].target
            assert target is not None
            at = target
        end = found.get(at, at)
        for p in chain:
            found[p] = end
        return end

    for previous in merges:
        root(previous)
    return found


def components(links: Iterable[Link]) -> dict[str, str]:
    """id -> a representative of the ids it is connected to through any alias, active or
    not (for every id named by an alias): where a delete reaches."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for link in links:
        if link.target is None:
            continue
        a, b = find(link.previous), find(link.target)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {x: find(x) for x in list(parent)}
