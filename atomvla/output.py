"""Where a command's OUT lands: never over an existing path unless asked, never half-written.

A new file or folder is written under a hidden temporary name beside OUT (`.NAME.atomvla-PID-XXXX`)
and renamed onto OUT once complete, so a reader sees the old OUT or the new one, never a mix; with
`overwrite` the old one is kept until then. A temporary left by a killed writer is recognised by
that name, the writer's process id being gone and (for a folder) the marker file inside, and is
removed by the next write to the same OUT; nothing else beside OUT is ever touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atomvla.errors import UserError

MARKER = ".atomvla-partial"  # inside a temporary folder: written by us, not complete yet
_TAG = "atomvla"


class OutputExistsError(UserError, FileExistsError):
    """OUT exists and replacing it was not asked for (or it is of the other kind: file vs folder)."""


def check_output(out: Path, overwrite: bool, folder: bool) -> None:
    """Refuse OUT before any work: it exists without `overwrite`, or it is a file where a folder
    is written (or the reverse)."""
    out = Path(out)
    if not (out.exists() or out.is_symlink()):
        return
    if folder and not out.is_dir():
        raise OutputExistsError(f"{out}: is a file; this writes a folder")
    if not folder and out.is_dir():
        raise OutputExistsError(f"{out}: is a folder; this writes a file")
    if not overwrite:
        raise OutputExistsError(f"{out}: already exists; pass --overwrite to replace it, or choose another path")


def _temp_name(out: Path) -> str:
    return f".{out.name}.{_TAG}-{os.getpid()}-"


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporaries a killed writer left beside OUT (see the module docstring); returns them."""
    out = Path(out)
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{_TAG}-(\d+)-[A-Za-z0-9_]+")
    removed = []
    if not out.parent.is_dir():
        return removed
    for path in out.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or path.is_symlink() or _writer_alive(int(match.group(1))):
            continue
        if path.is_dir():
            if not (path / MARKER).is_file():
                continue
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


@contextmanager
def new_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `out` to write into; it becomes `out` when the block ends without
    error (replacing an existing `out` only with `overwrite`) and is removed otherwise."""
    out = Path(out)
    check_output(out, overwrite, folder=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_name(out), dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the folder's mode
    (tmp / MARKER).write_text(f"{os.getpid()}\n")
    try:
        yield tmp
        (tmp / MARKER).unlink()
        _replace_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    check_output(out, overwrite, folder=True)  # again: something may have appeared meanwhile
    if not out.exists():
        tmp.rename(out)
        return
    # Folders cannot be swapped in one rename: the old one moves into a marked temporary (removed
    # by the next write if this process dies now), the new one takes its place, the old one goes.
    trash = Path(tempfile.mkdtemp(prefix=_temp_name(out), dir=out.parent))
    (trash / MARKER).write_text(f"{os.getpid()}\n")
    out.rename(trash / "replaced")
    try:
        tmp.rename(out)
    except BaseException:
        (trash / "replaced").rename(out)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def new_file(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary file beside `out` to write; it replaces `out` in one rename when the block ends
    without error (an existing `out` only with `overwrite`) and is removed otherwise."""
    out = Path(out)
    check_output(out, overwrite, folder=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    fd, name = tempfile.mkstemp(prefix=_temp_name(out), dir=out.parent)
    tmp = Path(name)
    try:
        # mkstemp makes the file private (0600); OUT gets the mode any new file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        os.close(fd)
        yield tmp
        check_output(out, overwrite, folder=False)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(out: Path, text: str, overwrite: bool = False) -> None:
    """Write `text` to `out` via a temporary file and a rename: readers never see half a file."""
    with new_file(out, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
