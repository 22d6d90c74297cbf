#!/usr/bin/env python3
"""Import cycles between the modules of src/: each module's `crate::…` and `super::…` paths,
resolved to the module (file) they name, outside comments and unit tests; a module looking into
one of its own parents is not counted. Prints each cycle and exits 1 when there is one, so that
.ci/run keeps the layers looking only down (../shared/DESIGN.md, "The engine")."""
import glob
import os
import re
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def module_files():
    """Module path ("rank::pool") -> its file."""
    mods = {}
    for f in glob.glob("src/**/*.rs", recursive=True):
        parts = f[len("src/"):-len(".rs")].split("/")
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts in (["lib"], ["main"]):
            parts = []
        mods["::".join(parts)] = f
    return mods


def imports(mods):
    """Module -> the modules its code names."""
    def resolve(segments):
        for i in range(len(segments), 0, -1):
            m = "::".join(segments[:i])
            if m in mods:
                return m
        return None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        text = open(f).read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        text = re.sub(r"//.*", "", text)
        here = m.split("::") if m else []
        is_dir = f.endswith(("mod.rs", "lib.rs"))
        parent = here if is_dir else here[:-1]

        def base(kind, rest):
            segs = rest.split("::") if rest else []
            if kind == "crate":
                return segs
            b = list(parent)
            while segs and segs[0] == "super":
                b, segs = b[:-1], segs[1:]
            return b + segs

        def add(target):
            if target and target != m and not m.startswith(target + "::"):
                graph[m].add(target)

        for kind, rest in re.findall(r"\b(crate|super)((?:::\w+)+)", text):
            add(resolve(base(kind, rest[2:])))
        for kind, rest, inner in re.findall(r"\b(crate|super)((?:::\w+)*)::\{([^}]*)\}", text):
            for item in re.split(r"[,\s]+", inner):
                item = item.split("::")[0]
                if item and item != "self":
                    add(resolve(base(kind, rest[2:]) + [item]))
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(10000)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


mods = module_files()
found = cycles(imports(mods))
for c in found:
    print("import cycle:", " <-> ".join(c))
print(f"{len(mods)} modules, {len(found)} import cycles")
sys.exit(1 if found else 0)
