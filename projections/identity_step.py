"""The app's link graph step (docs/design.md §7): links and deletes in, notes to ids out.

One hash per app (keys.identity_graph) holds every alias and unmerge by previous id (`l:`),
the ids each id was ever joined to by an alias (`a:`), and each id's deletes (`d:`). A step
reads the component of the ids its items name, adds the items, writes at the version it read
(optimistic, like a user step: a zombie's write is refused), and then tells every id of the
component its root, and every id the deletes of the ids connected to it, at the version it
wrote (`g`). A repeat writes nothing and tells the same again at the version in force:
what a crash between the write and the sends lost is sent then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field
from projections.identity import Link, components, roots
from projections.origins import Mail, Note
from projections.step import Contended, FoldConfig, Positioned, Sink, apply_batch
from projections.store import Store, Write, version_of
from schemas.models import Alias, Command


@dataclass(frozen=True)
class GraphItem:
    """A link (an alias or an unmerge) or a delete of `user_id`, for the app's graph."""

    app_id: str
    user_id: str
    link: Link | None = None
    delete: Command | None = None


class GraphContended(Contended):
    """The app's graph kept changing under this writer (another writer: a rebalance's overlap)."""


def _ids(item: GraphItem) -> list[str]:
    if item.link is not None and item.link.target is not None:
        return [item.link.previous, item.link.target]
    return [item.user_id]


async def _component(
    store: Store, key: str, seeds: set[str], extra: dict[str, set[str]]
) -> set[str]:
    """Every id joined to the seeds by an alias, stored or among this step's (`extra`)."""
    seen: set[str] = set()
    frontier = set(seeds)
    while frontier:
        seen |= frontier
        names = sorted(frontier)
        (found,) = await store.read([(key, [f"a:{x}" for x in names])])
        nxt: set[str] = set()
        for x in names:
            nxt |= set(decode_field(found[f"a:{x}"])) if f"a:{x}" in found else set()
            nxt |= extra.get(x, set())
        frontier = nxt - seen
    return seen


async def _app_step(
    store: Store, namespace: str, app_id: str, items: list[GraphItem]
) -> list[Note]:
    key = keys.identity_graph(namespace, app_id)
    new_edges: dict[str, set[str]] = {}
    for item in items:
        if item.link is not None and item.link.target is not None:
            new_edges.setdefault(item.link.previous, set()).add(item.link.target)
            new_edges.setdefault(item.link.target, set()).add(item.link.previous)
    for _ in range(20):
        (head,) = await store.read([(key, [keys.VERSION])])
        version = version_of(head)
        seeds = {x for item in items for x in _ids(item)}
        ids = sorted(await _component(store, key, seeds, new_edges))
        names = [f"{p}:{x}" for x in ids for p in ("a", "l", "d")]
        (found,) = await store.read([(key, names)])
        stored: dict[str, Any] = {n: decode_field(v) for n, v in found.items()}
        now = dict(stored)
        for x, others in new_edges.items():
            now[f"a:{x}"] = sorted(set(now.get(f"a:{x}", [])) | others)
        for item in items:
            if item.link is not None:
                link = item.link
                entry = [link.at, link.link_id, link.target]
                links = now.get(f"l:{link.previous}", [])
                if entry not in links:
                    now[f"l:{link.previous}"] = sorted([*links, entry], key=repr)
            if item.delete is not None:
                mine = dict(now.get(f"d:{item.user_id}", {}))
                mine[item.delete.command_id] = item.delete.issued_at
                now[f"d:{item.user_id}"] = mine
        to_set = {n: encode_field(v) for n, v in now.items() if stored.get(n) != v}
        if to_set:
            (ok,) = await store.commit([Write(key, version, to_set, [])])
            if not ok:
                continue
            version += 1
        return _notes(app_id, ids, now, version)
    raise GraphContended(f"the identity graph of app {app_id!r} kept changing under this writer")


def _notes(app_id: str, ids: list[str], graph: dict[str, Any], g: int) -> list[Note]:
    links = [Link(p, at, lid, t) for p in ids for at, lid, t in graph.get(f"l:{p}", [])]
    linked = {x for x in ids if graph.get(f"a:{x}")}
    found = roots(links)
    groups = components(links)  # the ids may be of several components: deletes stay in theirs
    out = [Note("root", app_id, x, found.get(x, x), g) for x in sorted(linked)]
    for who in ids:
        reach = {x for x in linked if who in groups and groups.get(x) == groups[who]}
        for cid, at in sorted(graph.get(f"d:{who}", {}).items()):
            for other in sorted(reach - {who}):
                record = Command(
                    type="command",
                    command="delete",
                    command_id=cid,
                    issued_at=at,
                    app_id=app_id,
                    user_id=other,
                )
                out.append(Note("erase", app_id, other, who, g, record))
    return out


async def apply_graph_batch(store: Store, namespace: str, items: list[GraphItem]) -> list[Note]:
    """Add links and deletes to their apps' graphs; the notes to send, once written."""
    by_app: dict[str, list[GraphItem]] = {}
    for item in items:
        by_app.setdefault(item.app_id, []).append(item)
    notes: list[Note] = []
    for app_id, mine in sorted(by_app.items()):
        notes += await _app_step(store, namespace, app_id, mine)
    return notes


def graph_item(m: Mail) -> GraphItem:
    """A mail to the app's link graph as the graph step takes it."""
    (record,) = m.records
    if isinstance(record, Alias):
        link = Link(record.previous_id, record.timestamp, record.event_id, record.user_id)
        return GraphItem(m.app_id, m.origin, link=link)
    assert isinstance(record, Command)
    if record.command == "unmerge":
        return GraphItem(
            m.app_id, m.origin, link=Link(record.user_id, record.issued_at, record.command_id, None)
        )
    return GraphItem(m.app_id, m.origin, delete=record)


def delivered(m: Mail, where: tuple[str, int, int]) -> list[Positioned]:
    """A mail to an id as its step takes it (`where`: the message's topic, partition, offset)."""
    if m.kind == "add":
        return [
            Positioned(r.model_copy(update={"user_id": m.to}), *where, m.origin, m.g)
            for r in m.records
        ]
    assert m.to is not None
    return [Positioned(Note(m.kind, m.app_id, m.to, m.origin, m.g), *where)]


class DirectMailer:
    """The merge protocol in one process, for a replay and a handover, which fold a namespace
    no worker serves yet: what a step sends is applied here, to its ids and to the link graph,
    until nothing is left (`drain`). Any order gives the same views, so this one does too."""

    def __init__(self, store: Store, sink: Sink, namespace: str, config: FoldConfig) -> None:
        self.store, self.sink, self.namespace, self.config = store, sink, namespace, config
        self.queue: list[Mail] = []

    async def send(self, mails: list[Mail]) -> None:
        self.queue += mails

    async def drain(self, now_ms: int) -> None:
        where = ("direct", 0, 0)  # merge messages are never under a fence
        while self.queue:
            mails, self.queue = self.queue, []
            notes = await apply_graph_batch(
                self.store, self.namespace, [graph_item(m) for m in mails if m.to is None]
            )
            items = [p for m in mails if m.to is not None for p in delivered(m, where)]
            items += [Positioned(n, *where) for n in notes]
            if items:
                await apply_batch(
                    self.store,
                    self.sink,
                    self.namespace,
                    items,
                    now_ms=now_ms,
                    config=self.config,
                    mailer=self,
                )
