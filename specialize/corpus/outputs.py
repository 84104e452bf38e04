"""Writing build outputs so that nothing half-written is ever visible, locally or on object stores.

Every file goes to a temporary name and is renamed into place. Output names are deterministic, so a
retried Beam bundle rewrites the same file with the same bytes instead of adding a duplicate.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import BinaryIO, Iterator


def is_remote(path: str) -> bool:
    return "://" in path


def join(directory: str, *names: str) -> str:
    return "/".join([directory.rstrip("/"), *names]) if is_remote(directory) else os.path.join(directory, *names)


def make_dirs(directory: str) -> None:
    if not is_remote(directory):
        os.makedirs(directory, exist_ok=True)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    with open_atomic(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def open_atomic(path: str) -> Iterator[BinaryIO]:
    """A binary stream that becomes ``path`` when the block ends without an error (a temporary
    sibling renamed into place); on an error the temporary is deleted and ``path`` is untouched.
    For outputs too large to hold in memory (a shard written batch by batch)."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        handle = FileSystems.create(temporary)
        try:
            yield handle
            handle.close()
        except BaseException:
            handle.close()
            FileSystems.delete([temporary])
            raise
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([temporary], [path])
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    os.replace(temporary, path)


def read_bytes(path: str) -> bytes:
    from specialize.corpus.streams import open_binary  # streams uses is_remote from here

    with open_binary(path) as handle:
        return handle.read()


def list_names(directory: str, prefix: str = "") -> list[str]:
    """Base names of the files directly in ``directory`` starting with ``prefix``."""
    if is_remote(directory):
        from apache_beam.io.filesystems import FileSystems

        matches = FileSystems.match([join(directory, prefix + "*")])[0].metadata_list
        return sorted(m.path.rsplit("/", 1)[-1] for m in matches)
    if not os.path.isdir(directory):
        return []
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix))


def list_tree(directory: str) -> list[str]:
    """Every file under ``directory``, recursively, as full paths (object stores: every key under the
    prefix; they have no directories to test for)."""
    if is_remote(directory):
        from apache_beam.io.filesystems import FileSystems

        return sorted(m.path for m in FileSystems.match([join(directory, "**")])[0].metadata_list)
    found = []
    for root, _, names in os.walk(directory):
        found += [os.path.join(root, name) for name in names]
    return sorted(found)


def new_build_id() -> str:
    """Sortable by time, unique across launchers: ``20261130T010203Z-3fa9c1``."""
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def delete(paths: list[str]) -> None:
    for path in paths:
        if is_remote(path):
            from apache_beam.io.filesystems import FileSystems

            if FileSystems.exists(path):
                FileSystems.delete([path])
        elif os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
