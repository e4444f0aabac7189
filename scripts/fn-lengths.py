#!/usr/bin/env python3
"""The longest functions of a crate, in lines (signature to closing brace).

usage: scripts/fn-lengths.py [DIR] [N]    (default: engine/src, 10)

Counts braces outside string and char literals and comments; test code (files named
*_tests.rs, `mod tests` at a file's bottom) is left out. A rough count, for reports.
"""

import os
import re
import sys

FN = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+|async\s+|unsafe\s+)*fn\s+([A-Za-z_][A-Za-z0-9_]*)")
LITERAL = re.compile(r'r#*"|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'|//.*')


def code_braces(line, raw):
    """The braces of a line that are code; `raw` is the open raw string's closer, if any."""
    out = []
    i = 0
    while i < len(line):
        if raw:
            end = line.find(raw, i)
            if end < 0:
                return out, raw
            i, raw = end + len(raw), None
            continue
        m = LITERAL.search(line, i)
        stop = m.start() if m else len(line)
        out.extend(c for c in line[i:stop] if c in "{}")
        if not m:
            break
        tok = m.group(0)
        if tok.startswith("//"):
            break
        if tok.startswith("r"):
            raw = '"' + "#" * (len(tok) - 2)
        i = m.end()
    return out, raw


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found = []
    stack = []  # (name, start line, depth at which its body opened)
    depth, raw = 0, None
    for n, line in enumerate(lines, 1):
        if re.match(r"^\s*mod tests\s*\{", line):
            break
        m = FN.match(line) if not raw else None
        if m:
            stack.append([m.group(1), n, None])
        braces, raw = code_braces(line, raw)
        for c in braces:
            if c == "{":
                depth += 1
                if stack and stack[-1][2] is None:
                    stack[-1][2] = depth
            else:
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    found.append((n - start + 1, name, path, start))
                depth -= 1
        # A signature without a body (a trait method) ends at its `;`.
        if stack and stack[-1][2] is None and line.rstrip().endswith(";"):
            stack.pop()
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "engine/src"
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs") and not f.endswith("_tests.rs"):
                found.extend(functions(os.path.join(d, f)))
    for length, name, path, start in sorted(found, reverse=True)[:top]:
        print(f"{length:5} {os.path.relpath(path, root)}:{start} {name}")


if __name__ == "__main__":
    main()
