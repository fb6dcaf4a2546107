"""A bounded, thread-safe store of the key/value states of recently scored token prefixes.

A search extends prefixes it scored a moment ago: the beam's partial solution plus one new step. A
causal model's keys, values and step logits at token ``t`` depend only on tokens ``0..t``, so whatever
was computed for a token prefix is exactly right for any input that starts with the same token ids at
the same positions, whatever came after it. ``PrefixCache`` keeps them in a radix tree over token ids
(the tree SGLang's RadixAttention uses): each node holds one run of tokens, its keys and values
(a tensor ``[..., tokens, head_dim]``, token axis second to last) and its per-token step logits.
``match`` finds the longest cached prefix of an input, ending anywhere (a step boundary, inside the
prompt, mid-step); ``insert`` adds a computed input, splitting a node where two inputs part.

Keys are exact token ids from position 0, so the cache is right for any rendering: a prompt cut by
``overflow="truncate_prompt"``, or a whole-text rendering (``prm.rendering``) that tokenizes a longer
solution differently near a step's end, simply matches less.

Memory is bounded by ``max_bytes`` (keys, values and logits): after an insert, least recently used
leaves are dropped until it fits (a node is used when a match or insert passes through it; a parent is
dropped only once its children are). One input bigger than the whole budget is not kept. Every method
holds one lock, so threads share a cache; tensors handed out by ``match`` are never changed in place
(a split copies), so a caller may read them after the lock is released, even if they are evicted.
Knows nothing of models: torch only through the tensors it is given (slicing, ``clone``, ``nbytes``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class _Node:
    edge: tuple[int, ...]
    kv: object  # tensor [..., len(edge), D]
    logits: np.ndarray  # [len(edge)]
    parent: _Node | None = None
    children: dict[int, _Node] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return 0 if self.kv is None else int(self.kv.nbytes) + int(self.logits.nbytes)


@dataclass
class Match:
    """The longest cached prefix of an input: ``length`` tokens, their key/value ``segments`` in order
    (to be concatenated along the token axis) and their step ``logits``."""

    length: int
    segments: list
    logits: np.ndarray


def _common(edge: tuple[int, ...], ids: Sequence[int], pos: int) -> int:
    """How many leading tokens of ``edge`` equal ``ids[pos:]``."""
    if tuple(ids[pos:pos + len(edge)]) == edge:
        return len(edge)
    m, top = 0, min(len(edge), len(ids) - pos)
    while m < top and edge[m] == ids[pos + m]:
        m += 1
    return m


class PrefixCache:
    def __init__(self, max_bytes: int):
        """``max_bytes``: the most the stored keys, values and logits may take (0 keeps nothing)."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._root = _Node((), None, np.zeros(0, np.float32))
        self._lru: OrderedDict[_Node, None] = OrderedDict()  # every node but the root, least recent first
        self._lock = threading.Lock()
        self.bytes = 0
        self.stats = {"lookups": 0, "hits": 0, "tokens_reused": 0, "tokens_computed": 0, "evictions": 0}

    def __len__(self) -> int:
        return len(self._lru)

    def match(self, ids: Sequence[int], count: bool = True) -> Match:
        """The longest cached prefix of ``ids`` (``count``: record it in ``stats``)."""
        with self._lock:
            node, pos, segments, logits = self._root, 0, [], []
            while pos < len(ids):
                child = node.children.get(ids[pos])
                if child is None:
                    break
                m = _common(child.edge, ids, pos)
                self._lru.move_to_end(child)
                if m < len(child.edge):
                    segments.append(child.kv[..., :m, :])
                    logits.append(child.logits[:m])
                    pos += m
                    break
                segments.append(child.kv)
                logits.append(child.logits)
                pos, node = pos + m, child
            if count:
                self.stats["lookups"] += 1
                self.stats["hits"] += pos > 0
                self.stats["tokens_reused"] += pos
            return Match(pos, segments, np.concatenate(logits) if logits else np.zeros(0, np.float32))

    def insert(self, ids: Sequence[int], kv: Callable[[int, int], object], logits: np.ndarray) -> None:
        """Store an input: ``kv(a, b)`` gives the keys/values of its tokens ``a..b-1`` (called only for the part
        not already stored), ``logits`` its step logits at every token."""
        with self._lock:
            node, pos = self._root, 0
            while pos < len(ids):
                child = node.children.get(ids[pos])
                if child is None:
                    self._add(node, ids, pos, kv, logits)
                    break
                m = _common(child.edge, ids, pos)
                if m < len(child.edge):
                    child = self._split(child, m)
                self._lru.move_to_end(child)
                pos, node = pos + m, child
            self._evict()

    def _add(self, parent: _Node, ids: Sequence[int], pos: int, kv, logits: np.ndarray) -> None:
        new = _Node(tuple(ids[pos:]), kv(pos, len(ids)).contiguous(),
                    np.ascontiguousarray(logits[pos:len(ids)], dtype=np.float32), parent)
        if new.nbytes > self.max_bytes:  # bigger than the whole budget: not kept
            return
        parent.children[new.edge[0]] = new
        self._lru[new] = None
        self.bytes += new.nbytes

    def _split(self, node: _Node, m: int) -> _Node:
        """Cut ``node`` after ``m`` tokens; the head takes its place in the tree and is returned."""
        head = _Node(node.edge[:m], node.kv[..., :m, :].clone(), node.logits[:m].copy(), node.parent)
        self.bytes -= node.nbytes
        node.edge, node.kv, node.logits = node.edge[m:], node.kv[..., m:, :].clone(), node.logits[m:].copy()
        node.parent.children[head.edge[0]] = head
        head.children[node.edge[0]] = node
        node.parent = head
        self.bytes += head.nbytes + node.nbytes
        self._lru[head] = None
        return head

    def _evict(self) -> None:
        while self.bytes > self.max_bytes:
            leaf = next((n for n in self._lru if not n.children), None)
            if leaf is None:
                return
            del self._lru[leaf]
            del leaf.parent.children[leaf.edge[0]]
            self.bytes -= leaf.nbytes
            self.stats["evictions"] += 1

    def record(self, computed: int) -> None:
        """Count tokens a model computed for the inputs looked up here."""
        with self._lock:
            self.stats["tokens_computed"] += int(computed)

    def snapshot(self) -> dict:
        """The counters, with ``misses``, the bytes in use, the budget and the number of nodes."""
        with self._lock:
            out = dict(self.stats)
            out.update(misses=out["lookups"] - out["hits"], bytes=self.bytes, max_bytes=self.max_bytes,
                       nodes=len(self._lru))
            return out

    def clear(self) -> None:
        with self._lock:
            self._root.children.clear()
            self._lru.clear()
            self.bytes = 0
