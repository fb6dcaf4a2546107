"""A search as one text: every explored step, abandoned branches included, with explicit backtrack markers.

``linearise(result)`` rebuilds the tree of every step the search proposed (from the trace's
``propose`` events: prefix + proposal) and writes it depth first, in the order steps were proposed,
with the chosen solution's branch last at every level, so the text ends on the answer the search
returned. Leaving a branch writes one marker line, ``BACKTRACK.format(k=k)`` ("[backtrack to step k]",
k = the steps kept, 0 = start over), before the next step. That is the shape a "stream of search"
fine-tune trains on: the model sees exploration, dead ends and the return to an earlier state.

``exploration(result)`` gives the same as lines, and ``branches(result)`` the explored leaves.
Standard library only.
"""

from __future__ import annotations

from serving.search.core import SearchResult

BACKTRACK = "[backtrack to step {k}]"


def _tree(result: SearchResult) -> dict[tuple[str, ...], list[str]]:
    """prefix -> its child steps in the order first proposed (identical steps once)."""
    children: dict[tuple[str, ...], list[str]] = {}
    for e in result.trace:
        if e.get("event") != "propose":
            continue
        prefix = tuple(e["prefix"])
        kids = children.setdefault(prefix, [])
        for text in e["proposals"]:
            if text and text not in kids:
                kids.append(text)
    chosen = tuple(result.steps)
    for i in range(len(chosen)):  # the chosen path is in the tree even if the trace was trimmed
        kids = children.setdefault(chosen[:i], [])
        if chosen[i] not in kids:
            kids.append(chosen[i])
    return children


def branches(result: SearchResult) -> list[list[str]]:
    """Every explored leaf path (abandoned or finished), in the order ``linearise`` writes them."""
    children, out = _tree(result), []
    chosen = tuple(result.steps)

    def walk(prefix: tuple[str, ...]) -> None:
        kids = children.get(prefix, [])
        if not kids:
            out.append(list(prefix))
            return
        on_path = chosen[len(prefix)] if chosen[:len(prefix)] == prefix and len(chosen) > len(prefix) else None
        for step in [k for k in kids if k != on_path] + ([on_path] if on_path in kids else []):
            walk(prefix + (step,))

    walk(())
    return [b for b in out if b]


def exploration(result: SearchResult, marker: str = BACKTRACK) -> list[str]:
    """The lines of ``linearise``: steps, and a marker wherever the walk goes back up."""
    lines: list[str] = []
    current: list[str] = []
    for path in branches(result):
        common = 0
        while common < min(len(current), len(path)) and current[common] == path[common]:
            common += 1
        if current:
            lines.append(marker.format(k=common))
        lines.extend(path[common:])
        current = path
    return lines


def linearise(result: SearchResult, marker: str = BACKTRACK) -> str:
    return "\n".join(exploration(result, marker))


def backtracks(result: SearchResult) -> int:
    return max(0, len(branches(result)) - 1)
