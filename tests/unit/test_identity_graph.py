"""The link graph of docs/design.md §7 (projections/identity.py) against the batch reference's
own, plainer walk (tests/reference.py), and the cases the design names."""

from __future__ import annotations

import random

import reference as ref
from hypothesis import given
from hypothesis import strategies as st

from projections.identity import Link, components, roots

IDS = ["a", "b", "c", "d", "e"]


def wire(link: Link) -> dict:
    if link.target is None:
        return {
            "type": "command",
            "command": "unmerge",
            "command_id": link.link_id,
            "issued_at": link.at,
            "app_id": "app",
            "user_id": link.previous,
        }
    return {
        "type": "alias",
        "event_id": link.link_id,
        "timestamp": link.at,
        "app_id": "app",
        "user_id": link.target,
        "previous_id": link.previous,
    }


@st.composite
def link_sets(draw: st.DrawFn) -> list[Link]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        previous = draw(st.sampled_from(IDS))
        target = draw(st.sampled_from([None, *[x for x in IDS if x != previous]]))
        # few distinct times, so that ties of time are common and ids decide
        out.append(
            Link(previous, draw(st.integers(0, 3)), f"l{draw(st.integers(0, 2))}{i}", target)
        )
    return out


@given(links=link_sets(), seed=st.integers(0, 2**32))
def test_roots_and_components_match_the_reference_in_any_order(
    links: list[Link], seed: int
) -> None:
    shuffled = links + random.Random(seed).sample(links, len(links) // 2)  # duplicates too
    random.Random(seed).shuffle(shuffled)
    found = roots(shuffled)
    wired = [wire(link) for link in links]
    for x in IDS:
        assert found.get(x, x) == ref.root_of(wired, "app", x)
    groups = components(shuffled)
    for x in IDS:
        for y in IDS:
            together = x == y or (x in groups and y in groups and groups[x] == groups[y])
            assert together == (y in ref._connected(wired, "app", x))


def test_the_cases_of_the_design() -> None:
    chain = [Link("a", 1, "x1", "b"), Link("b", 2, "x2", "c")]
    assert roots(chain) == {"a": "c", "b": "c"}
    several = [Link("a", 1, "x1", "c"), Link("b", 1, "x2", "c")]
    assert roots(several) == {"a": "c", "b": "c"}
    realias = [Link("a", 1, "x1", "b"), Link("a", 2, "x2", "c")]
    assert roots(realias) == {"a": "c"}
    undone = [Link("a", 1, "x1", "b"), Link("a", 2, "u1", None)]
    assert roots(undone) == {}
    redone = [*undone, Link("a", 3, "x3", "b")]
    assert roots(redone) == {"a": "b"}
    # a cycle: its latest alias (c -> a, at 3) does not count, so c is the root
    cycle = [Link("a", 1, "x1", "b"), Link("b", 2, "x2", "c"), Link("c", 3, "x3", "a")]
    assert roots(cycle) == {"a": "c", "b": "c"}
    # deletes reach along every alias, in force or not
    assert components(undone)["a"] == components(undone)["b"]
