#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Path check: every repository path named in the documentation and in source comments exists.

Where it looks:
  - Markdown files (README.md, docs/*.md, any other *.md): the whole text, plus the targets of
    relative links, [text](target), which are resolved from the Markdown file's directory.
  - Comments of C, CUDA and header files (*.c *.h *.cu *.cuh *.def): /* ... */ and // ... .
  - Comments of meson.build and meson_options.txt files: # ... .
  - Comments of shell and Python scripts under tools/, test/ and .ci/ (*.sh, *.py, and files
    without an extension that start with a sh/bash/python shebang): # ... , and Python
    docstrings.
  Files are those git knows of: tracked, plus new files that are not ignored.

What counts as a path:
  - A token that starts with one of the repository's top-level directories (TOP_DIRS below, plus
    any other top-level directory git knows of), e.g. plugin/conn.c, test/transport/,
    include/rcmoe/*.h. It must not be glued to something before it ("src/include/x.h",
    "../plugin/x.c" and "build-test/plugin/x.so" are not ours). A ":LINE" or ":LINE-LINE"
    suffix and trailing punctuation are dropped.
  - A bare name from ROOT_FILES (README.md, LICENSE, ...): a file at the repository root.
  - Globs (*, ?, [...], {a,b}; ** for any depth) are fine when they match at least one file.
  - A path exists when it names a file or a directory git knows of; "dir/" names a directory.

Run-time paths (created by a build or a run, never committed) are allowed through ALLOWLIST,
fnmatch patterns on the path as written. Build directories (build*/), results/ and .carry/ do
not start with a top-level directory of the repository, so they are never checked at all.

Usage: tools/check-paths.py [-v]   (-v also lists every reference found)
Exits 1 when a reference dangles (each printed as FILE:LINE: PATH), 2 on a usage or git error.
"""

import fnmatch
import io
import os
import re
import subprocess
import sys
import tokenize

# Top-level directories whose paths are checked (other top-level directories git knows of are
# added at run time, so a new one is covered; these stay checked even if one disappears).
TOP_DIRS = ["plugin", "kernels", "include", "tools", "test", "docs", ".ci"]

# Bare names that mean a file at the repository root.
ROOT_FILES = [
    "README.md",
    "LICENSE",
    "LICENSE.txt",
    "NOTICE",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "meson_options.txt",
    ".clang-format",
    ".gitignore",
]

# Paths that are created at run time inside the checked directories, with the reason. Keep this
# short: a committed file that was renamed is not a run-time path.
ALLOWLIST = {
    # The libFuzzer binary: a ninja target inside a build directory ("ninja -C build
    # test/codec/rcmoe-fuzz-codec"), defined in test/codec/meson.build, never committed.
    "test/codec/rcmoe-fuzz-codec": "build output (ninja target)",
}

C_EXT = (".c", ".h", ".cu", ".cuh", ".def")
SCRIPT_DIRS = ("tools/", "test/", ".ci/")

PATH_CHARS = r"[A-Za-z0-9_.+\-/*?\[\]{},]"
BEFORE = r"(?<![A-Za-z0-9_./\-~$@])"
URL_RX = re.compile(r"[a-z][a-z0-9+.-]*:")  # https:, mailto:, ...


def git_files(root):
    """Files git knows of: tracked (still present) plus untracked files that are not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        stdout=subprocess.PIPE,
        check=True,
    ).stdout.decode("utf-8", "replace")
    files = sorted({f for f in out.split("\0") if f and os.path.isfile(os.path.join(root, f))})
    return files


# ---- comment extraction: each returns a list of (line number, text) ----


def c_comments(text):
    """/* */ and // comments of C-like text, skipping string and character literals."""
    out = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k, part in enumerate(text[i:end].split("\n")):
                out.append((line + k, part))
            line += text.count("\n", i, end)
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append((line, text[i:end]))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        else:
            i += 1
    return out


def hash_comments(text, quotes, word_start):
    """# comments of shell or meson text. `quotes` are the string delimiters; with word_start,
    # starts a comment only at the start of a word (shell: "${#a[@]}" and "$#" are not)."""
    out = []
    quote = None
    for ln, row in enumerate(text.split("\n"), 1):
        i = 0
        while i < len(row):
            c = row[i]
            if quote:
                if c == "\\" and quote != "'":
                    i += 2
                    continue
                if c == quote:
                    quote = None
            elif c == "\\":
                i += 2
                continue
            elif c in quotes:
                quote = c
            elif c == "#" and (not word_start or i == 0 or row[i - 1] in " \t;&|()<>"):
                out.append((ln, row[i:]))
                break
            i += 1
        if quote == "'" and quotes == "'":  # meson strings do not span lines (except ''')
            quote = None
    return out


def python_comments(text):
    """# comments and docstrings (a string that is a statement of its own)."""
    out = []
    prev = tokenize.NEWLINE
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out.append((tok.start[0], tok.string))
            elif tok.type == tokenize.STRING and prev in (
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENCODING,
            ):
                for k, part in enumerate(tok.string.split("\n")):
                    out.append((tok.start[0] + k, part))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return hash_comments(text, "\"'", False)
    return out


def kind_of(path, text):
    base = os.path.basename(path)
    if path.endswith(".md"):
        return "md"
    if path.endswith(C_EXT):
        return "c"
    if base in ("meson.build", "meson_options.txt"):
        return "meson"
    if not path.startswith(SCRIPT_DIRS):
        return None
    if path.endswith(".sh"):
        return "sh"
    if path.endswith(".py"):
        return "py"
    if "." not in base:
        first = text.split("\n", 1)[0]
        if first.startswith("#!"):
            if "python" in first:
                return "py"
            if re.search(r"\b(ba)?sh\b", first):
                return "sh"
    return None


def regions(kind, text):
    if kind == "md":
        return list(enumerate(text.split("\n"), 1))
    if kind == "c":
        return c_comments(text)
    if kind == "meson":
        return hash_comments(text, "'", False)
    if kind == "sh":
        return hash_comments(text, "\"'", True)
    if kind == "py":
        return python_comments(text)
    return []


# ---- path matching ----


def expand_braces(p):
    m = re.search(r"\{([^{}]*)\}", p)
    if not m:
        return [p]
    out = []
    for alt in m.group(1).split(","):
        out += expand_braces(p[: m.start()] + alt + p[m.end() :])
    return out


def glob_re(pattern):
    """fnmatch-like, but * and ? stay inside one path component; ** crosses them."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"/?\Z")


class Repo:
    def __init__(self, root):
        self.root = root
        self.files = git_files(root)
        self.fileset = set(self.files)
        self.dirs = set()
        for f in self.files:
            parts = f.split("/")
            for k in range(1, len(parts)):
                self.dirs.add("/".join(parts[:k]))
        self.entries = sorted(self.fileset | self.dirs)

    def exists(self, p):
        p = os.path.normpath(p) if p not in ("", ".") else p
        if p.startswith("../") or p == "..":
            return False
        if any(ch in p for ch in "*?[{"):
            for alt in expand_braces(p):
                if any(ch in alt for ch in "*?["):
                    rx = glob_re(alt)
                    if not any(rx.match(e) for e in self.entries):
                        return False
                elif alt not in self.fileset and alt not in self.dirs:
                    return False
            return True
        return p in self.fileset or p in self.dirs


def clean(token):
    """Drop what follows a path in prose: trailing punctuation and unbalanced ] or }. (A ":LINE"
    suffix never gets in: ":" is not a path character here.)"""
    while True:
        t = token.rstrip(".,;!'\"`")
        if t and t[-1] in "]}" and t.count(t[-1]) > t.count("[" if t[-1] == "]" else "{"):
            t = t[:-1]
        if t == token:
            return t
        token = t


def main():
    verbose = "-v" in sys.argv[1:]
    if any(a not in ("-v",) for a in sys.argv[1:]):
        print("usage: tools/check-paths.py [-v]", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        repo = Repo(root)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"check-paths: cannot list the repository's files: {e}", file=sys.stderr)
        return 2

    tops = sorted(set(TOP_DIRS) | {d for d in repo.dirs if "/" not in d}, key=len, reverse=True)
    alts = "|".join(re.escape(t) for t in tops)
    top_rx = re.compile(BEFORE + r"((?:" + alts + r")/" + PATH_CHARS + r"*)")
    names = "|".join(re.escape(f) for f in ROOT_FILES)
    root_rx = re.compile(BEFORE + r"(" + names + r")(?![A-Za-z0-9_.\-/])")
    link_rx = re.compile(r"\]\(([^)\s]+)\)")

    dangling, nrefs, nfiles = [], 0, 0
    for path in repo.files:
        try:
            with open(os.path.join(root, path), encoding="utf-8") as fh:
                text = fh.read()
        except (UnicodeDecodeError, OSError):
            continue
        kind = kind_of(path, text)
        if not kind:
            continue
        nfiles += 1
        seen = set()
        for ln, chunk in regions(kind, text):
            found = []
            if kind == "md":
                # Link targets are relative to the Markdown file: checked as such, not as text.
                for m in link_rx.finditer(chunk):
                    target = m.group(1).split("#", 1)[0]
                    if not target or target.startswith("/") or URL_RX.match(target):
                        continue
                    found.append(os.path.normpath(os.path.join(os.path.dirname(path), target)))
                chunk = link_rx.sub("]()", chunk)
            for m in top_rx.finditer(chunk):
                found.append(clean(m.group(1)))
            for m in root_rx.finditer(chunk):
                found.append(m.group(1))
            for ref in found:
                if not ref or (ln, ref) in seen:
                    continue
                seen.add((ln, ref))
                nrefs += 1
                ok = repo.exists(ref) or any(fnmatch.fnmatchcase(ref, a) for a in ALLOWLIST)
                if verbose:
                    print(f"{'ok' if ok else 'MISS'} {path}:{ln}: {ref}")
                if not ok:
                    dangling.append((path, ln, ref))

    for path, ln, ref in dangling:
        print(f"{path}:{ln}: {ref}: no such file or directory in the repository")
    print(f"check-paths: {nrefs} references in {nfiles} files, {len(dangling)} dangling")
    return 1 if dangling else 0


if __name__ == "__main__":
    sys.exit(main())
