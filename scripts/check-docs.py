#!/usr/bin/env python3
"""make test's docs check: every relative link in README.md, docs/*.md and importer/README.md
points at a file of this repository (and at a heading of it when it has a #anchor), and every
`make <target>` the README and docs/ mention is a Makefile target. Exit 1 listing what is broken.

`check-docs.py --self-test` proves the check fails on a broken link and anchor."""
import pathlib
import re
import sys
import tempfile

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
MAKE = re.compile(r"(?:^|[\s;&|(])make ([a-z][a-z0-9_-]*)")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading):
    """GitHub's anchor for a heading: lowercase, markup dropped, spaces to '-', punctuation
    other than '-' and '_' dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every heading's anchor in a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen, found, fenced = {}, set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def split_code(path):
    """The file's prose (links in code are examples, not links) and its code: fenced blocks
    and inline spans, where a `make <target>` is a command rather than the verb."""
    prose, code, fenced = [], [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
            code.extend(re.findall(r"`([^`]+)`", line))
    return "\n".join(prose), code


def make_targets(makefile):
    return set(re.findall(r"^([A-Za-z0-9_-]+):", makefile.read_text(), re.M))


def check(root):
    root = root.resolve()
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "importer" / "README.md"]
    targets = make_targets(root / "Makefile")
    problems = []
    for doc in docs:
        if not doc.exists():
            problems.append(f"{doc.relative_to(root)}: missing")
            continue
        name = doc.relative_to(root)
        text, code = split_code(doc)
        for url in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", url):  # http:, https:, mailto:
                continue
            path, _, anchor = url.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            if root not in target.parents and target != root:
                problems.append(f"{name}: {url}: outside the repository")
            elif not target.exists():
                problems.append(f"{name}: {url}: no such file")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                problems.append(f"{name}: {url}: no heading #{anchor} in {target.relative_to(root)}")
        for target in sorted({t for snippet in code for t in MAKE.findall(snippet)}):
            if target not in targets:
                problems.append(f"{name}: make {target}: no such Makefile target")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "docs").mkdir()
        (root / "importer").mkdir()
        (root / "Makefile").write_text("run:\n\ttrue\n")
        (root / "importer" / "README.md").write_text("# Importer\n")
        (root / "docs" / "a.md").write_text("# A\n\n## Some `code`, and more!\n\n## Some code and more\n")
        good = "`make run`. [a](docs/a.md#some-code-and-more) [b](docs/a.md#some-code-and-more-1) [c](#top)\n"
        (root / "README.md").write_text("# Top\n\n" + good)
        assert check(root) == [], check(root)
        (root / "README.md").write_text(
            "# Top\n\n" + good + "[x](docs/b.md) [y](docs/a.md#nope) [z](../../etc/passwd) make targets, `make nope`\n"
            "```\n[in code](nowhere.md)\n```\n")
        problems = check(root)
        assert len(problems) == 4, problems
        for needle in ("docs/b.md", "#nope", "outside", "make nope"):
            assert any(needle in p for p in problems), (needle, problems)
    print("check-docs self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    root = pathlib.Path(__file__).resolve().parent.parent
    problems = check(root)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"docs check: {len(problems)} broken", file=sys.stderr)
        return 1
    print("docs check: links and make targets ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
