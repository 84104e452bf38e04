"""Writing build outputs so that nothing half-written is ever visible, locally or on object stores.

Every file goes to a temporary name and is renamed into place. Output names are deterministic, so a
retried Beam bundle rewrites the same file with the same bytes instead of adding a duplicate.
"""

from __future__ import annotations

import os
import uuid


def is_remote(path: str) -> bool:
    return "://" in path


def join(directory: str, *names: str) -> str:
    return "/".join([directory.rstrip("/"), *names]) if is_remote(directory) else os.path.join(directory, *names)


def make_dirs(directory: str) -> None:
    if not is_remote(directory):
        os.makedirs(directory, exist_ok=True)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(temporary) as handle:
            handle.write(data)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([temporary], [path])
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
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
