"""The docs hold together: relative links resolve, and the commands they show exist.

* Every relative link (and image) in docs/*.md and README.md points to an existing file, and
  a ``#fragment`` into a Markdown page names one of its headings (GitHub's anchors).
* Every ``latentdiag COMMAND`` in the code of docs/guide.md and docs/cookbook.md (fenced
  blocks and inline code) is a registered command (``data SUB`` a ``data`` subcommand), and
  every option written after it is one that command takes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from latentdiag.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
WALKTHROUGHS = [DOCS / "guide.md", DOCS / "cookbook.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
INVOCATION = re.compile(r"(?:^|(?<=[\s$(`'\"]))latentdiag[ \t]+(?=\S)")
SHELL_PUNCT = set("();<>|&")


def _lines_outside_code(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for the lines outside fenced blocks, inline code blanked out."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def _github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link shows its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a Markdown page: its headings (repeats get -1, -2, ...) and <a id>s."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = page.read_text(encoding="utf-8")
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = _github_slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link, image and reference definition outside code."""
    for number, line in _lines_outside_code(page.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            yield number, match.group(1)
        ref = REF_DEF.match(line)
        if ref:
            yield number, ref.group(1)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """'page:line: target (why)' for each relative link of ``page`` that does not resolve."""
    problems = []
    for number, target in links(page):
        if SCHEME.match(target):
            continue  # http:, https:, mailto: — not checked offline
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{where} (no heading with anchor #{fragment} in {dest.name})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert page.exists(), f"{page} is missing"
    assert broken_links(page) == []


def test_link_checker_catches_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n\n## Same\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading) [ok](other.md#same-1) [ok](#top) [web](https://x.invalid/)\n"
        "# Top\n"
        "[missing](nothere.md) ![img](img/none.png) [anchor](other.md#nope)\n"
        "`[in code](nothere2.md)`\n"
        "```\n[fenced](nothere3.md)\n```\n"
        "[ref]: gone.md\n",
        encoding="utf-8",
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md:3: nothere.md (no such file)",
        "page.md:3: img/none.png (no such file)",
        "page.md:3: other.md#nope (no heading with anchor #nope in other.md)",
        "page.md:8: gone.md (no such file)",
    ]


def test_github_slugs() -> None:
    assert _github_slug("`latentdiag data synth` and `data preview`") == (
        "latentdiag-data-synth-and-data-preview"
    )
    assert _github_slug("Check: requirements") == "check-requirements"
    assert _github_slug("Silhouette — `separation.silhouette`, `silhouette_per_label`") == (
        "silhouette--separationsilhouette-silhouette_per_label"
    )
    assert _github_slug("PyTorch to ONNX") == "pytorch-to-onnx"


def code_snippets(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, code) for each fenced line (continuations joined) and inline code span."""
    fenced, pending, start = False, "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
        else:
            for match in INLINE_CODE.finditer(line):
                yield number, match.group(2)


def invocations(page: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, words after ``latentdiag``) for each command in the page's code."""
    for number, code in code_snippets(page):
        for match in INVOCATION.finditer(code):
            yield number, _words(code[match.end() :])


def _words(command_line: str) -> list[str]:
    """Shell words up to the first pipe, redirection, separator or comment."""
    lexer = shlex.shlex(command_line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    try:
        for word in lexer:
            if word and set(word) <= SHELL_PUNCT:
                break
            words.append(word)
    except ValueError:  # unbalanced quotes (program output, prose): plain words will do
        words = command_line.split()
    return words


def _is_placeholder(word: str) -> bool:
    return word.startswith("-") or word.isupper() or not re.fullmatch(r"[a-z][a-z0-9-]*", word)


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def command_problems(page: Path, root: Path = ROOT) -> list[str]:
    """'page:line: ...' for each command or option in the page's code that latentdiag lacks."""
    problems = []
    ctx = click.Context(cli)
    for number, words in invocations(page):
        where = f"{page.relative_to(root)}:{number}: latentdiag {' '.join(words[:2])}"
        if not words or _is_placeholder(words[0]):
            continue
        if words[0] not in COMMANDS:
            problems.append(f"{where} (no command {words[0]!r})")
            continue
        command = cli.get_command(ctx, words[0])
        assert command is not None
        rest = words[1:]
        if isinstance(command, click.Group) and rest and not _is_placeholder(rest[0]):
            sub = command.get_command(ctx, rest[0])
            if sub is None:
                problems.append(f"{where} (no subcommand {rest[0]!r})")
                continue
            command, rest = sub, rest[1:]
        known = _options(command)
        for word in rest:
            option = word.split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", option) and option not in known:
                problems.append(f"{where} (no option {option})")
    return problems


@pytest.mark.parametrize("page", WALKTHROUGHS, ids=lambda p: p.name)
def test_commands_in_walkthroughs_exist(page: Path) -> None:
    assert page.exists(), f"{page} is missing"
    assert any(True for _ in invocations(page)), f"{page.name} shows no latentdiag command"
    assert command_problems(page) == []


def test_command_checker_catches_unknown_commands_and_options(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `latentdiag metrics latents.h5 --json` or `latentdiag COMMAND --help`.\n"
        "```bash\n"
        "latentdiag frobnicate x.h5\n"
        "latentdiag data synth x.npz --n 10 --bogus 3 | latentdiag data nosuch\n"
        "torchrun --nproc_per_node=2 -m latentdiag train --n-images 400 \\\n"
        "    --epochs 1 --colour red  # --also-not-checked\n"
        "latentdiag check l.h5 --require 'silhouette>=0.5' > out.json 2>&1\n"
        "```\n",
        encoding="utf-8",
    )
    assert command_problems(page, root=tmp_path) == [
        "page.md:3: latentdiag frobnicate x.h5 (no command 'frobnicate')",
        "page.md:4: latentdiag data synth (no option --bogus)",
        "page.md:4: latentdiag data nosuch (no subcommand 'nosuch')",
        "page.md:5: latentdiag train --n-images (no option --colour)",
    ]
