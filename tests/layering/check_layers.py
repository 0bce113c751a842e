#!/usr/bin/env python3
"""Layering check: no source file includes a header from a higher layer than its own.

    python3 tests/layering/check_layers.py [REPO_ROOT]
    python3 tests/layering/check_layers.py --self-test

Reads every .h, .cpp and .cu under the folders of LAYERS below, takes each `#include "..."` that
names a file of the repository (relative to the root, or to the including file's folder), and
fails, listing file, line and both layers, when the included file's layer is above the
including file's. Same-layer includes are fine. A file in a folder the table does not name is an
error too, so that a new module gets its place in the table. docs/architecture.md draws the
same picture; docs/testing.md says how to run this.
"""
import re
import sys
from pathlib import Path

# Bottom to top: a file may include headers of its own layer and of the layers below it. A row
# is (layer name, folder prefixes); the longest matching prefix decides a file's layer.
LAYERS = [
    ("core", ["framework/core"]),
    ("backend", ["framework/backend"]),  # kernels, registry; cpu, cuda, no_cuda
    ("autograd", ["framework/autograd"]),
    ("ops", ["framework/ops"]),
    ("parallel", ["parallel"]),  # comm, grid, layout, attention dispatch, ring/ulysses/hybrid, grad_sync
    ("nn+optim", ["framework/nn", "framework/optim"]),
    ("config", ["framework/config"]),  # the run config: typed keys (some are optim's own types)
    ("io", ["framework/io"]),
    ("data", ["data"]),
    ("models", ["models"]),
    ("train", ["framework/train"]),
    ("launch", ["launch"]),
]

# Includes allowed to break the table, each (including file, included file), with a comment
# saying why; empty now. The check fails on a listed pair that no longer occurs, so the list
# cannot go stale.
KNOWN_VIOLATIONS = set()

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SOURCE_SUFFIXES = {".h", ".cpp", ".cu", ".cuh"}


def layer_of(rel):
    """(rank, name) of a repository-relative path, or None outside the table."""
    best = None
    for rank, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if rel == prefix or rel.startswith(prefix + "/"):
                if best is None or len(prefix) > best[2]:
                    best = (rank, name, len(prefix))
    return None if best is None else best[:2]


def resolve(root, including, target):
    """The repository-relative path an include names, or None (a system or generated file)."""
    for base in (root, (root / including).parent):
        path = (base / target).resolve()
        if path.is_file():
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                return None
    return None


def check(root, known):
    """The problems of the tree at `root` (a list of lines) and the known violations met."""
    tops = sorted({prefix.split("/")[0] for _, prefixes in LAYERS for prefix in prefixes})
    errors, seen_known = [], set()
    checked = 0
    for top in tops:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            mine = layer_of(rel)
            if mine is None:
                errors.append(f"{rel}: in no layer of tests/layering/check_layers.py; add its folder to LAYERS")
                continue
            checked += 1
            text = path.read_text(errors="replace")
            for match in INCLUDE.finditer(text):
                target = resolve(root, rel, match.group(1))
                if target is None:
                    continue
                theirs = layer_of(target)
                if theirs is None or theirs[0] <= mine[0]:
                    continue
                if (rel, target) in known:
                    seen_known.add((rel, target))
                    continue
                line = text.count("\n", 0, match.start()) + 1
                errors.append(f"{rel}:{line}: includes {target}: layer {theirs[1]} is above {mine[1]}")
    for rel, target in sorted(known - seen_known):
        errors.append(f"{rel}: no longer includes {target}: remove the pair from KNOWN_VIOLATIONS")
    return errors, checked, len(seen_known)


def self_test():
    """The check finds an upward include, a folder outside the table and a stale allow-list
    entry, and passes a tree that only includes downwards."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {"framework/core/a.h": '#include "framework/core/b.h"\n', "framework/core/b.h": "",
                 "models/m.h": '#include "framework/core/a.h"\n'}
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        assert check(root, set())[0] == [], "a downward include is fine"
        (root / "framework/core/b.h").write_text('#include "models/m.h"\n')
        errors = check(root, set())[0]
        assert len(errors) == 1 and "framework/core/b.h:1: includes models/m.h" in errors[0], errors
        assert check(root, {("framework/core/b.h", "models/m.h")})[0] == [], "a known violation is allowed"
        (root / "framework/core/b.h").write_text("")
        errors = check(root, {("framework/core/b.h", "models/m.h")})[0]
        assert len(errors) == 1 and "no longer includes" in errors[0], errors
        (root / "framework/newthing").mkdir()
        (root / "framework/newthing/x.cpp").write_text("")
        errors = check(root, set())[0]
        assert len(errors) == 1 and "in no layer" in errors[0], errors
    print("layering: self-test passed")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        self_test()
        return 0
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]).resolve()
    errors, checked, known = check(root, KNOWN_VIOLATIONS)
    for e in errors:
        print(e)
    print(f"layering: {checked} files checked, {len(errors)} problem(s), {known} known violation(s) allowed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
