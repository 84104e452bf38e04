"""Repository-level code documents: a repository's files, in dependency order, as one training document.

DeepSeek-Coder, StarCoder2 and Qwen2.5-Coder train on whole repositories so that a model sees a file
after the files it imports. A build with ``--repo-level`` groups the files that passed the file-level
filters and dedup by repository and writes, per repository (Qwen2.5-Coder's format)::

    <|repo_name|>{repository}
    <|file_sep|>{path of file 1}
    {content of file 1}
    <|file_sep|>{path of file 2}
    {content of file 2}
    ...

- **Repository.** Trees: every immediate subfolder of an ``--input`` folder is a repository (files directly
  under the input form one named after it). Records: the first of the profile's ``repo_fields``
  (``repo_name``, ``max_stars_repo_name``, ``repo``) with the file path from ``path_fields``.
- **Order.** Python files after the files they import, as DeepSeek-Coder's dependency parsing: ``import``
  and ``from ... import`` statements (relative ones too) resolved to files of the same repository
  (``a/b.py`` is ``a.b``; a ``src/`` prefix and ``__init__.py`` packages are understood). A depth-first
  walk in path order emits each file after its dependencies; an import cycle is broken where the walk meets
  it again, so the order is deterministic. Other files keep the path order.
- **Markers.** ``<|repo_name|>`` and ``<|file_sep|>`` are control tokens, never text: the Qwen2.5 tokenizer
  names them (ids 151663 and 151664); the Qwen 1.0 vocabulary has the same ids as ``<|extra_17|>`` and
  ``<|extra_18|>``, which are used there (the embedded tiny vocabulary lays its extras out the same way).
  Each part of the document is tokenized on its own (``encode_ordinary``), so a marker string inside a
  file is text, never a control id.
- **Length.** A repository longer than ``max_bytes`` of text is split on file boundaries into several
  documents, each starting with the ``<|repo_name|>`` header (one file longer than the limit is a
  document of its own; it is never cut).
"""

from __future__ import annotations

import ast
import posixpath
import re
from dataclasses import dataclass

REPO_NAME, FILE_SEP = "<|repo_name|>", "<|file_sep|>"
#: The same ids in Qwen 1.0's vocabulary layout (and the embedded tiny vocabulary's).
MARKER_FALLBACKS = {REPO_NAME: "<|extra_17|>", FILE_SEP: "<|extra_18|>"}
DEFAULT_REPO_MAX_BYTES = 4 * 32768  # about 32k tokens of code at Qwen's ~4 bytes per token
REPO_LANGUAGE = "repository"  # the shard's language column for assembled documents
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\s+([\w*, ()]+)|import\s+([\w., ]+))", re.MULTILINE)


@dataclass(frozen=True)
class RepoFile:
    path: str  # inside the repository, "/"-separated
    text: str
    source: str  # the corpus document it came from


def marker_ids(special_tokens: dict[str, int]) -> dict[str, int]:
    """The control ids of the two markers in a tokenizer (by name, else Qwen 1.0's extras)."""
    ids = {}
    for marker, fallback in MARKER_FALLBACKS.items():
        token = marker if marker in special_tokens else fallback
        if token not in special_tokens:
            raise ValueError(f"the tokenizer has neither {marker} nor {fallback}: repository-level documents need one")
        ids[marker] = special_tokens[token]
    return ids


def input_root(given: str) -> str:
    """The folder an ``--input`` names, as its files' paths start: absolute for local inputs (discovery
    lists absolute paths), the literal part before any glob for object-store inputs."""
    import os

    from specialize.corpus.sources import is_glob, literal_prefix

    if "://" not in given:
        return os.path.abspath(given).rstrip("/")
    prefix = literal_prefix(given) if is_glob(given) else given
    return prefix.rstrip("/") if not is_glob(given) else prefix.rsplit("/", 1)[0]


def repo_and_path(source: str, given: str) -> tuple[str, str]:
    """(repository, path inside it) of a file of the tree input ``given`` (see the module doc)."""
    root = input_root(given)
    relative = source[len(root) + 1:] if source.startswith(root + "/") else posixpath.basename(source)
    head, _, rest = relative.partition("/")
    if not rest:  # a file directly under the input: the input folder is the repository
        return posixpath.basename(root) or root, head
    return head, rest


# -- dependency order -----------------------------------------------------------------------------

def _module_names(path: str) -> list[str]:
    """Dotted names under which a repository's Python file can be imported."""
    stem = path[: -len(".py")] if path.endswith(".py") else path
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    names = [".".join(parts)] if parts else []
    if len(parts) > 1 and parts[0] in ("src", "lib", "python"):
        names.append(".".join(parts[1:]))
    return [name for name in names if name]


def python_imports(path: str, text: str) -> list[str]:
    """Absolute dotted names a Python file imports (relative imports resolved against its package);
    ``ast`` when the file parses, a line pattern otherwise (old Python 2 files still have dependencies)."""
    package = path.split("/")[:-1]
    found: list[str] = []

    def add_from(level: int, module: str, names: list[str]) -> None:
        base = package[: len(package) - (level - 1)] if level else []
        if level and level - 1 > len(package):
            return
        prefix = ".".join([*base, *(module.split(".") if module else [])])
        found.append(prefix)
        found.extend(f"{prefix}.{name}" if prefix else name for name in names if name != "*")

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        for match in _IMPORT_LINE.finditer(text):
            if match[3]:
                found.extend(part.split(" as ")[0].strip() for part in match[3].split(","))
            else:
                dots = len(match[1]) - len(match[1].lstrip("."))
                names = [n.split(" as ")[0].strip(" ()") for n in match[2].split(",")]
                add_from(dots, match[1].lstrip("."), names)
        return [name for name in found if name]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            add_from(node.level, node.module or "", [alias.name for alias in node.names])
    return [name for name in found if name]


def dependency_order(files: list[RepoFile]) -> list[RepoFile]:
    """Files so that each Python file follows the repository files it imports (see the module doc)."""
    by_path = {f.path: f for f in files}
    modules: dict[str, str] = {}
    for path in sorted(by_path):
        if path.endswith(".py"):
            for name in _module_names(path):
                modules.setdefault(name, path)
    dependencies: dict[str, list[str]] = {}
    for path in sorted(by_path):
        if not path.endswith(".py"):
            continue
        targets = []
        for name in python_imports(path, by_path[path].text):
            target = modules.get(name)
            if target is None and "." in name:  # "from pkg import function": the module is pkg
                target = modules.get(name.rsplit(".", 1)[0])
            if target is not None and target != path and target not in targets:
                targets.append(target)
        dependencies[path] = sorted(targets)
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the walk's path (a cycle closes here), 2: emitted

    def visit(path: str) -> None:
        stack = [(path, iter(dependencies.get(path, ())))]
        state[path] = 1
        while stack:
            current, pending = stack[-1]
            target = next(pending, None)
            if target is None:
                stack.pop()
                state[current] = 2
                order.append(current)
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(dependencies.get(target, ()))))
            # state 1: a cycle, broken here; state 2: already emitted

    for path in sorted(by_path):
        if path not in state:
            visit(path)
    return [by_path[path] for path in order]


# -- assembly --------------------------------------------------------------------------------------

def assemble(repository: str, files: list[RepoFile], max_bytes: int = DEFAULT_REPO_MAX_BYTES) -> list[list[tuple[str, str]]]:
    """The repository's documents as parts: ``("special", marker)`` or ``("text", text)``, split on file
    boundaries at ``max_bytes`` of text (see the module doc)."""
    documents: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = 0
    for file in dependency_order(files):
        body = f"{file.path}\n{file.text}" + ("" if file.text.endswith("\n") else "\n")
        length = len(body.encode("utf-8"))
        if current and size + length > max_bytes:
            documents.append(current)
            current, size = [], 0
        if not current:
            current = [("special", REPO_NAME), ("text", f"{repository}\n")]
        current += [("special", FILE_SEP), ("text", body)]
        size += length
    if current:
        documents.append(current)
    return documents


def parts_text(parts: list[tuple[str, str]]) -> str:
    return "".join(text for _, text in parts)


def show_repository_document(tokens, tokenizer) -> str:
    """A repository document decoded for reading, its markers shown by their Qwen2.5 names."""
    names = {token_id: marker for marker, token_id in marker_ids(tokenizer.special_tokens).items()}
    pieces, run = [], []
    for token in list(tokens):
        if int(token) in names:
            pieces.append(tokenizer.decode(run))
            pieces.append(names[int(token)])
            run = []
        elif int(token) != tokenizer.eod_id:
            run.append(int(token))
    pieces.append(tokenizer.decode(run))
    return "".join(pieces)
