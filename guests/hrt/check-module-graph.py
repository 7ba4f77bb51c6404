#!/usr/bin/env python3
"""Fails if the HRT's modules import each other in a cycle.

The graph comes from `use crate::...` items and inline `crate::module::` paths in src/*.rs
(comments ignored); `crate::item` for an item of the crate root (main.rs) is an edge to main, and
main.rs's own `module::` paths are its edges (its `mod` declarations are not). Prints the graph.

usage: check-module-graph.py [SRC_DIR]   (default: the src/ next to this script)
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
files = sorted(f for f in os.listdir(src) if f.endswith(".rs"))
mods = {f[:-3] for f in files}


def code_of(path):
    # Comments out (doc comments included); string contents are harmless here.
    return "\n".join(line.split("//")[0] for line in open(path).read().splitlines())


root_items = set(re.findall(
    r'^(?:pub(?:\([a-z]+\))?\s+)?(?:extern "C"\s+)?(?:fn|const|static|struct|enum)\s+([A-Za-z_]\w*)',
    code_of(os.path.join(src, "main.rs")), re.M))


def use_roots(body):
    """First path segments named by a `use crate::<body>;` item."""
    body = body.strip()
    if not body.startswith("{"):
        return [re.split(r"::|\s", body)[0]]
    items, depth, cur = [], 0, ""
    for ch in body[1:-1]:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [re.split(r"::|\s", it.strip())[0] for it in items if it.strip()]


graph = {}
for f in files:
    me = f[:-3]
    code = code_of(os.path.join(src, f))
    deps = set()
    for m in re.finditer(r"\buse\s+crate::([^;]*);", code, re.S):
        deps.update(use_roots(m.group(1)))
    for m in re.finditer(r"\bcrate::([A-Za-z_]\w*)", code):
        deps.add(m.group(1))
    if me == "main":
        deps.update(m.group(1) for m in re.finditer(r"(?<![:\w])([a-z_]\w*)::", code))
    deps = {"main" if d in root_items else d for d in deps}
    graph[me] = sorted(d for d in deps if d in mods and d != me)

for name in sorted(graph):
    print(f"{name:12} -> {', '.join(graph[name])}")

cycles, state, stack = [], {}, []


def visit(u):
    state[u] = "open"
    stack.append(u)
    for v in graph[u]:
        if state.get(v) == "open":
            cycles.append(stack[stack.index(v):] + [v])
        elif v not in state:
            visit(v)
    stack.pop()
    state[u] = "done"


for name in sorted(graph):
    if name not in state:
        visit(name)
for c in cycles:
    print("check-module-graph: cycle: " + " -> ".join(c), file=sys.stderr)
if cycles:
    sys.exit(1)
print(f"check-module-graph: {len(graph)} modules, {sum(map(len, graph.values()))} imports, no cycle")
