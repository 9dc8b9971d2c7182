#!/usr/bin/env python3
"""Issue 16's structure numbers, checked: no source file over 800 lines of non-test code, and no
import cycle between the files of a crate.

Non-test code: a file's lines minus its `#[cfg(test)]` items (an inline `mod tests { … }` or a
`#[cfg(test)] mod x;` whose file is then skipped whole). Files of tests/ and benches are tests.

Imports: an edge A -> B when file A names a path (`use` or inline) that resolves to module file B
of the same crate (`crate::…`, `super::…`, `self::…`, or a child module by its bare name). A
parent's `mod child;` declaration is not an edge, nor are `pub use` re-exports of a child by its
own parent (the facade pattern: the parent is the child's public face, not its user). Cycles are
the strongly connected components of that graph with more than one file.

Usage: scripts/structure.py [--max-lines N] [--quiet]; exit 1 when a bound is broken.
"""
import argparse
import os
import re
import sys

CRATES = {"berth": "src", "berth-store": "store/src", "berth-builder": "builder/src",
          "berth-registry": "registry/src", "berth-runner": "runner/src"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strip_comments_and_strings(text):
    """Blank out comments and string/char literals so braces and paths in them are not counted."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]) or (c == "'" and re.match(r"'\\[xu]", text[i:i + 3])):
            j = text.find("'", i + 2) + 1
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(code, start):
    """Index just past the `}` matching the first `{` at or after start (or `;` if it comes first)."""
    depth = 0
    for j in range(start, len(code)):
        ch = code[j]
        if ch == ";" and depth == 0:
            return j + 1
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def test_spans(code):
    """(start, end, declared_module_or_None) of every #[cfg(test)] item."""
    spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*", code):
        rest = code[m.end():]
        decl = re.match(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", rest)
        end = block_end(code, m.end())
        spans.append((m.start(), end, decl.group(1) if decl else None))
    return spans


def module_files(src):
    """Map module path (tuple) -> file, for every .rs under src."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods[tuple(parts)] = os.path.join(dirpath, f)
    return mods


PATH_RE = re.compile(r"(?<![\w.(])((?:crate|super|self)\b(?:\s*::\s*\w+)*)(?:\s*::\s*\{([^;]*?)\})?")


def resolve(mod, path, mods, with_rest=False):
    """The longest module-file prefix of `path` (a list of segments) as seen from module `mod`."""
    if not path:
        return (None, []) if with_rest else None
    if path[0] == "crate":
        base, rest = (), path[1:]
    elif path[0] in ("super", "self"):
        base, rest = mod, path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        base, rest = mod, path
    best, after = None, []
    for k in range(0, len(rest) + 1):
        cand = tuple(base) + tuple(rest[:k])
        if cand in mods:
            best, after = cand, list(rest[k:])
    return (best, after) if with_rest else best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-lines", type=int, default=800)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--edges", help="print the edges of this file")
    args = ap.parse_args()
    failed = False
    for crate, src in CRATES.items():
        src = os.path.join(ROOT, src)
        mods = module_files(src)
        test_files = set()
        codes = {}
        for mod, path in mods.items():
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            code = strip_comments_and_strings(text)
            spans = test_spans(code)
            for _, _, decl in spans:
                if decl:
                    test_files.add(mod + (decl,))
            # keep test spans blank for line counting and edges
            kept = list(code)
            for s, e, _ in spans:
                for j in range(s, e):
                    if kept[j] != "\n":
                        kept[j] = " "
            codes[mod] = "".join(kept)
        # a file declared only under cfg(test) is a test file, and so are its children
        def is_test(mod):
            return any(mod[:k] in test_files for k in range(1, len(mod) + 1))
        edges = {m: set() for m in mods if not is_test(m)}
        # `pub use` re-exports: (module, name) -> the module file that defines it, so that
        # `crate::Runner` is an edge to the file of Runner, not to lib.rs
        reexports = {}
        for mod in edges:
            for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+([\w:\s]+?)(?:::\s*\{([^;]*?)\})?\s*;", codes[mod]):
                head = [p.strip() for p in m.group(1).strip().rstrip(":").split("::") if p.strip()]
                items = [head] if not m.group(2) else [
                    head + [p.strip() for p in it.strip().split(" as ")[0].split("::")]
                    for it in m.group(2).split(",") if it.strip() and it.strip() != "self"]
                for path in items:
                    target = resolve(mod, path, mods)
                    alias = path[-1]
                    if target is not None and target != mod:
                        reexports[(mod, alias)] = target

        def resolve_through(mod, path):
            target, rest = resolve(mod, path, mods, with_rest=True)
            # follow re-exports of the next segment after the module prefix
            for _ in range(8):
                if target is None or not rest or (target, rest[0]) not in reexports:
                    break
                nxt = reexports[(target, rest[0])]
                target, rest = resolve(nxt, ["crate"] + list(nxt) + rest[1:], mods, with_rest=True)
            return target

        for mod in edges:
            code = codes[mod]
            lines = sum(1 for line in code.split("\n") if line.strip())
            if lines > args.max_lines:
                failed = True
                print(f"{crate}: {os.path.relpath(mods[mod], ROOT)}: {lines} lines of non-test code (bound {args.max_lines})")
            children = {m[-1] for m in mods if len(m) == len(mod) + 1 and m[:-1] == mod}
            # paths through crate/super/self
            for m in PATH_RE.finditer(code):
                head = [p.strip() for p in m.group(1).split("::")]
                groups = [head]
                if m.group(2):
                    groups = []
                    for item in m.group(2).split(","):
                        item = item.strip().split(" as ")[0].strip()
                        if item and item != "self":
                            groups.append(head + [p.strip() for p in item.split("::")])
                        elif item == "self":
                            groups.append(head)
                for path in groups:
                    target = resolve_through(mod, path)
                    if target is not None and target != mod and target in edges:
                        pre = code[max(0, m.start() - 40):m.start()]
                        # a parent re-exporting its own child is its facade, not its user
                        if target[:-1] == mod and re.search(r"pub(\([^)]*\))?\s+use\s+$", pre):
                            continue
                        if target == mod[:len(target)]:
                            # a child naming its ancestor's own items through super/crate: an
                            # ancestor is the child's namespace, counted as an edge only when
                            # the ancestor also uses the child (handled by the cycle search)
                            pass
                        edges[mod].add(target)
            # bare child paths: `child::item` in a parent
            for child in children:
                cm = mod + (child,)
                if cm not in edges:
                    continue
                for m in re.finditer(r"(?<![\w:])" + re.escape(child) + r"\s*::", code):
                    pre = code[max(0, m.start() - 40):m.start()]
                    if re.search(r"pub(\([^)]*\))?\s+use\s+$", pre):
                        continue
                    edges[mod].add(cm)
                    break
        if args.edges:
            for m, targets in edges.items():
                if os.path.relpath(mods[m], ROOT) == args.edges:
                    print("\n".join(sorted(os.path.relpath(mods[t], ROOT) for t in targets)))
        # strongly connected components (Tarjan, iterative enough for these sizes)
        index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
        sys.setrecursionlimit(10000)

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in edges[v]:
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(comp)
        for v in edges:
            if v not in index:
                strong(v)
        for comp in sccs:
            failed = True
            names = sorted(os.path.relpath(mods[m], ROOT) for m in comp)
            print(f"{crate}: import cycle between {len(comp)} files: {' '.join(names)}")
            if not args.quiet:
                for m in sorted(comp):
                    inside = sorted(os.path.relpath(mods[t], ROOT) for t in edges[m] if t in comp)
                    print(f"    {os.path.relpath(mods[m], ROOT)} -> {', '.join(inside)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
