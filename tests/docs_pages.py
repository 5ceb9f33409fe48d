"""The documentation as data: README.md and docs/*.md, their fenced blocks, their command lines
and their inline code. Pure parsing, shared by the tests that run the docs and check their facts."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[1]


def pages() -> list[Path]:
    """Every page a user reads: the README and docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def page_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language (the first word of the info string) and
    the rest of the info string, and its text (dedented to the fence)."""

    page: str
    line: int
    lang: str
    info: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


_FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ ]*$",
    re.M | re.S,
)


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        words = match["info"].split()
        found.append(
            Block(
                page_name(path),
                text.count("\n", 0, match.start()) + 1,
                words[0] if words else "",
                tuple(words[1:]),
                body,
            )
        )
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def prose(path: Path) -> str:
    """The page without its fenced blocks (what inline code and links live in)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def inline_code(path: Path) -> list[str]:
    """The inline code spans of a page, outside fenced blocks (a span may wrap a line)."""
    return [span.replace("\n", " ") for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", prose(path))]


@dataclass
class Command:
    """One command line of a block: its text (continuations joined), its line number in the
    page, and the output the docs show after it (console blocks only)."""

    text: str
    line: int
    output: list[str] = field(default_factory=list)


def commands(block: Block) -> list[Command]:
    """The command lines of a ``sh`` block (every line that is not blank or a comment), or of
    a ``console`` block (the lines after ``$ ``; the lines up to the next one are its output)."""
    found: list[Command] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        line_number = block.line + offset
        if pending:  # a continuation line
            pending += " " + raw.strip()
        elif block.lang == "console" and raw.startswith("$ "):
            pending, start = raw[2:].strip(), line_number
        elif block.lang == "console":
            if found and raw.strip():
                found[-1].output.append(raw)
            continue
        elif raw.strip() and not raw.lstrip().startswith("#"):
            pending, start = raw.strip(), line_number
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found.append(Command(pending, start))
        pending = ""
    return found


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


@dataclass(frozen=True)
class Segment:
    """One command of a line, as the shell would run it: its text, whether it ends in ``&``
    (runs in the background), and its words (redirections and their targets left out)."""

    text: str
    background: bool
    words: tuple[str, ...]

    @property
    def assignments(self) -> dict[str, str]:
        """``NAME=value`` words before the program."""
        found = {}
        for word in self.words:
            name, eq, value = word.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                break
            found[name] = value
        return found

    @property
    def argv(self) -> tuple[str, ...]:
        """The words from the program on (leading assignments left out)."""
        return self.words[len(self.assignments) :]

    @property
    def programs(self) -> tuple[str, ...]:
        """Each program of the pipeline."""
        found, expect = [], True
        for word in self.argv:
            if word == "|":
                expect = True
            elif expect:
                found.append(word)
                expect = False
        return tuple(found)


def segments(line: str) -> list[Segment]:
    """Split a command line where the shell runs one command after another (``;``, ``&&``,
    a trailing ``&``), outside quotes and ``$(...)``."""
    line = strip_comment(line)
    parts: list[tuple[str, bool]] = []
    current, quote, depth, index = "", "", 0, 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif line.startswith("$(", index):
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0 and (line.startswith("&&", index) or line.startswith("||", index)):
            if line.startswith("||", index):
                raise ValueError(f"'||' is not supported by the docs runner: {line}")
            parts.append((current, False))
            current, index = "", index + 2
            continue
        elif depth == 0 and char == ";":
            parts.append((current, False))
            current, index = "", index + 1
            continue
        elif depth == 0 and char == "&" and line[index + 1 : index + 2] != ">":
            parts.append((current, True))
            current, index = "", index + 1
            continue
        current += char
        index += 1
    parts.append((current, False))
    return [
        Segment(text.strip(), background, _words(text))
        for text, background in parts
        if text.strip()
    ]


def _words(text: str) -> tuple[str, ...]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    skip = False
    for word in lexer:
        if skip:
            skip = False
            continue
        if word in (">", ">>", "<", "2>", "&>"):
            skip = True
            continue
        if re.fullmatch(r"\d?>&?\d?", word):
            continue
        words.append(word)
    return tuple(words)
