"""Monte Carlo tree search over steps with PRM values as the leaf evaluation.

The tree's nodes are steps (the root is the empty solution). ``budget`` is the number of
simulations; each one:

1. **selects** a node from the root by UCT, ``Q + c * sqrt(ln N_parent / N_child)`` with ``Q`` the
   mean backed-up value, descending while a node already has ``expand`` children (option, default
   3) and is not final; a node with room for another child is where the descent stops;
2. **expands** it by one sampled next step (a step identical to an existing child visits that child
   instead) and **rolls out** from there one sampled step at a time until a final step or
   ``max_steps``, every step a new node;
3. **evaluates** the new path with one PRM call: its step scores give every new node its score, and
   the path's aggregated score is the leaf value (no answer checking, no extra rollouts);
4. **backs up** that value along the path (visits + 1, value sum + value).

A simulation that starts below a different node than the previous one ended at is a **backtrack**
(the trace records it, with the depth it went back to). Selecting a finished node again re-backs-up
its value without generating. Each simulation generates at most one rollout, so the search costs
at most ``budget`` rollouts' worth of tokens. The result is the finished path with the best
aggregated PRM score (the best-valued unfinished path when none finished). Options: ``expand`` (3),
``c`` (exploration constant, 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from serving.search.core import SearchResult, SearchState


@dataclass
class Node:
    steps: list[str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    step_score: float | None = None
    final: bool = False
    id: int = 0

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


def uct(child: Node, parent_visits: int, c: float) -> float:
    if child.visits == 0:
        return float("inf")
    return child.q + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def mcts(state: SearchState, budget: int) -> SearchResult:
    width = int(state.options.get("expand", 3))
    c = float(state.options.get("c", 1.0))
    if width < 1 or c < 0:
        raise ValueError(f"mcts needs expand >= 1 and c >= 0, got expand={width}, c={c}")
    root, nodes = Node(steps=[]), []
    state.event("start", strategy="mcts", simulations=budget, expand=width, c=c)
    last_leaf: Node | None = None
    values: dict[int, float] = {}  # a finished or capped leaf's value, by node id
    for sim in range(budget):
        node = root
        while len(node.children) >= width:  # a terminal node has no children
            node = max(node.children, key=lambda ch: uct(ch, node.visits, c))  # first of the tied: stable
        if last_leaf is not None and node is not last_leaf and node not in last_leaf.path():
            state.event("backtrack", simulation=sim, to_depth=_common_depth(node, last_leaf),
                        from_steps=last_leaf.steps, to_steps=node.steps)
        last_leaf = node
        if node is not root and (node.final or len(node.steps) >= state.max_steps):
            state.event("revisit", simulation=sim, steps=node.steps, value=round(values[node.id], 6))
            _backup(node, values[node.id])
            continue
        added = _expand(state, node, nodes)
        if isinstance(added, Node):  # a step the node already has: a visit of that child
            _backup(added, values.get(added.id, 0.0))
            continue
        if not added:  # the generator proposed nothing here: the visit counts, valued 0
            _backup(node, 0.0)
            continue
        leaf = last_leaf = added[-1]
        scores = state.score([leaf.steps])[0]
        for depth, (n, s) in enumerate(zip(leaf.path()[1:], scores, strict=True)):
            n.step_score = s
            values[n.id] = state.agg(scores[:depth + 1])  # the PRM's value of this partial solution
        # The expanded child's value goes up to the root; the nodes the rollout added below it start
        # with their own value, so a right step is not blamed for a wrong continuation below it.
        _backup(added[0], values[added[0].id])
        for n in added[1:]:
            n.visits, n.value_sum = 1, values[n.id]
        state.event("expand", simulation=sim, from_depth=len(node.steps), steps=leaf.steps,
                    value=round(values[leaf.id], 6), expanded_value=round(values[added[0].id], 6),
                    final=leaf.final)
    finished = [n for n in nodes if n.final and n.id in values]
    pool = finished or [n for n in nodes if n.id in values]
    if not pool:
        return state.result([], None, "mcts", budget)
    best = max(pool, key=lambda n: (values[n.id], -n.id))
    state.event("select", strategy="mcts", nodes=len(nodes) + 1, finished=len(finished),
                best_visits=best.visits)
    return state.result(best.steps, values[best.id], "mcts", budget)


def _expand(state: SearchState, node: Node, nodes: list[Node]) -> list[Node] | Node:
    """A new child of ``node`` and the rollout below it, as the new nodes in order; the existing child
    when the step proposed is one ``node`` already has; [] when the generator proposed nothing."""
    got = state.propose_many([(node.steps, 1)])
    if not got or not got[0] or not got[0][0].text:
        return []
    text = got[0][0].text
    same = next((ch for ch in node.children if ch.steps[-1] == text), None)
    if same is not None:
        state.event("duplicate", steps=same.steps)
        return same
    added = [_add(state, node, text, nodes)]
    while not added[-1].final and len(added[-1].steps) < state.max_steps:
        got = state.propose_many([(added[-1].steps, 1)])
        if not got or not got[0] or not got[0][0].text:
            break
        added.append(_add(state, added[-1], got[0][0].text, nodes))
    return added


def _add(state: SearchState, parent: Node, text: str, nodes: list[Node]) -> Node:
    child = Node(steps=parent.steps + [text], parent=parent, final=state.is_final(text), id=len(nodes) + 1)
    parent.children.append(child)
    nodes.append(child)
    return child


def _backup(node: Node, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def _common_depth(a: Node, b: Node) -> int:
    pa, pb = a.path(), b.path()
    depth = 0
    for x, y in zip(pa, pb, strict=False):
        if x is not y:
            break
        depth += 1
    return depth - 1  # the root is depth 0 (no steps)
