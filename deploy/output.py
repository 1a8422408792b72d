"""The one place rendered files are written, and checked for drift: all or nothing, never through a link.

`write_files` stages every file beside its target and moves them all in, or changes nothing; `stale_files`
reports what differs from a fresh render, what is missing, and what render would not write at all.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploy.errors import MAX_LINE, MAX_PROBLEMS, UserError, escape

# Files render never writes yet expects in a directory it owns: the stack's secrets and the wheels `make up`
# fetches. .gitignore keeps them out of git (tests/unit/test_render.py checks it agrees).
KEPT = ("compose/*/.env", "k8s/*/secrets.env", "compose/*/wheels/*.whl")
STAGED_PREFIX = ".vllm-deploy-render-"  # a file being written, or the old copy kept until all are in
CHECK_CAP = 1 << 20  # bytes of a differing file read to tell whether it is text


@dataclass(frozen=True)
class Drift:
    """One way the files under the output root differ from a fresh render."""

    path: str  # relative to the output root
    reason: str


def owned_directories(files: dict[str, str]) -> list[str]:
    """The directories render owns: compose/<name>/ and k8s/<name>/ of the profiles rendered."""
    return sorted(
        {
            "/".join(parts[:2])
            for parts in (PurePosixPath(p).parts for p in files)
            if len(parts) > 2 and parts[0] in ("compose", "k8s")
        }
    )


def _kept(relative: str) -> bool:
    return any(PurePosixPath(relative).match(pattern) for pattern in KEPT)


def _link_in_path(out_dir: Path, relative: str) -> str | None:
    """The first part of `relative` under `out_dir` that is a symbolic link, or None."""
    current = out_dir
    for part in PurePosixPath(relative).parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return str(PurePosixPath(*current.relative_to(out_dir).parts))
        except OSError:
            return None
    return None


def _drift(out_dir: Path, relative: str, text: str) -> str | None:
    """Why the copy of `relative` under `out_dir` is not `text`, or None."""
    if (link := _link_in_path(out_dir, relative)) is not None:
        return f"{link} is a symbolic link: render writes only real files and directories"
    expected = text.encode("utf-8")
    try:
        fd = os.open(out_dir / relative, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        with os.fdopen(os.dup(fd), "rb") as handle:
            found = handle.read(max(len(expected), CHECK_CAP) + 1)  # NB: bounded: the file may be huge
    finally:
        os.close(fd)
    if found == expected:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(found, final=len(found) <= CHECK_CAP)
    except UnicodeDecodeError:
        return "differs: not UTF-8 text"
    return "differs"


def _strays(out_dir: Path, files: dict[str, str]) -> list[Drift]:
    """Files in a directory render owns that it would not write (a leftover, a hand-made file)."""
    found = []
    for owned in owned_directories(files):
        root = out_dir / owned
        try:
            if not stat.S_ISDIR(os.lstat(root).st_mode):  # missing, a link or a file: reported file by file
                continue
        except OSError:
            continue

        def unreadable(exc: OSError) -> None:
            found.append(
                Drift(
                    str(PurePosixPath(*Path(exc.filename).relative_to(out_dir).parts)),
                    f"cannot be read ({exc.strerror})",
                )
            )

        for directory, subdirectories, names in os.walk(root, onerror=unreadable):
            here = Path(directory)
            for name in sorted(names + [d for d in subdirectories if (here / d).is_symlink()]):
                relative = str(PurePosixPath(*(here / name).relative_to(out_dir).parts))
                if relative not in files and not _kept(relative):
                    found.append(Drift(relative, f"not written by render: delete it, or keep it outside {owned}/"))
    return found


def stale_files(files: dict[str, str], out_dir: Path) -> list[Drift]:
    """How the files under `out_dir` differ from `files`: missing, changed, undecodable, behind a symbolic
    link, or stray (in a directory render owns, yet not rendered). Reads only; never follows a link."""
    out_dir = Path(out_dir)
    try:
        os.stat(out_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot be used as the output root ({exc.strerror})") from None
    drift = [
        Drift(path, reason)
        for path, text in sorted(files.items())
        if (reason := _drift(out_dir, path, text)) is not None
    ]
    return sorted(drift + _strays(out_dir, files), key=lambda d: d.path)


def _unwritable(out_dir: Path, relative: str) -> str | None:
    """Why `relative` cannot be written under `out_dir`, or None. Nothing is followed: a symbolic link
    anywhere below `out_dir` is refused (render would write through it, into wherever it points)."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts or relative != str(path):
        return f"{relative}: not a path inside the output directory"
    current = out_dir
    for index, part in enumerate(path.parts):
        current = current / part
        last = index == len(path.parts) - 1
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return None  # this and the rest will be created
        except OSError as exc:
            return f"{current}: cannot be checked ({exc.strerror})"
        if stat.S_ISLNK(mode):
            return (
                f"{current}: is a symbolic link; render writes only real files and directories under "
                f"{out_dir} (remove the link)"
            )
        if not last and not stat.S_ISDIR(mode):
            return f"{current}: is a file where a directory is needed"
        if last and stat.S_ISDIR(mode):
            return f"{current}: is a directory where a file is needed"
        if last and not stat.S_ISREG(mode):
            return f"{current}: is not a regular file (a device, FIFO or socket)"
    return None


def _holds(directory: int, name: str, data: bytes) -> bool:
    """Whether `name` in `directory` is a regular file, mode 0644, of exactly `data` (never through a link)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o644 or info.st_size != len(data):
            return False
        found = b""
        while len(found) <= len(data) and (chunk := os.read(fd, len(data) + 1 - len(found))):
            found += chunk
        return found == data
    except OSError:
        return False
    finally:
        os.close(fd)


class _Write:
    """One all-or-nothing write of many files: every file is staged in its own destination directory
    (so a rename moves it in atomically: same filesystem, no copy), then all are moved in; on any failure
    every replaced file is put back and every created file and directory removed.

    Directories are opened one part at a time without following links (O_NOFOLLOW), so a link that
    appears after the checks is refused too, never written through.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.fds: dict[PurePosixPath, int] = {}
        self.created_dirs: list[tuple[int, str]] = []  # (parent fd, name), in creation order
        self.created_roots: list[Path] = []  # the output root and its parents, when render made them
        self.staged: list[tuple[int, str, str]] = []  # (directory fd, staged name, path relative to the root)
        self.done: list[tuple[int, str, str | None, bool]] = []  # (fd, name, old copy's name, old copy moved)
        self.leftovers: list[tuple[int, str]] = []
        self.current = ""  # the file being staged or moved in, for the message when it fails

    def directory(self, relative: PurePosixPath) -> int:
        if relative in self.fds:
            return self.fds[relative]
        if relative == PurePosixPath("."):
            missing = [p for p in (self.out_dir, *self.out_dir.parents) if not os.path.lexists(p)]
            for root in reversed(missing):
                os.mkdir(root, 0o755)
                self.created_roots.append(root)
            fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY)
        else:
            parent = self.directory(relative.parent)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            try:
                fd = os.open(relative.name, flags, dir_fd=parent)
            except FileNotFoundError:
                os.mkdir(relative.name, 0o755, dir_fd=parent)
                self.created_dirs.append((parent, relative.name))
                fd = os.open(relative.name, flags, dir_fd=parent)
        self.fds[relative] = fd
        return fd

    def stage(self, relative: str, content: str) -> None:
        self.current = relative
        path = PurePosixPath(relative)
        directory = self.directory(path.parent)
        data = content.encode("utf-8")
        if _holds(directory, path.name, data):
            return  # NB: already these bytes: left as it is (its inode and time stamps; build tools see no change)
        name = f"{STAGED_PREFIX}{secrets.token_hex(6)}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=directory)
        self.staged.append((directory, name, relative))
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), 0o644)

    def move_in(self) -> None:
        for directory, staged, relative in self.staged:
            self.current, name = relative, PurePosixPath(relative).name
            old: str | None = None
            moved = False
            try:
                mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(mode):  # it became one after the checks
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
                old = f"{STAGED_PREFIX}{secrets.token_hex(6)}.old"
                try:  # NB: a second name for the old file: the replacement below stays atomic for readers
                    os.link(name, old, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False)
                except OSError:  # a filesystem without hard links
                    os.rename(name, old, src_dir_fd=directory, dst_dir_fd=directory)
                    moved = True
                self.done.append((directory, name, old, moved))
            try:
                os.replace(staged, name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError:
                if old is not None:
                    self.done.pop()
                    if moved:
                        os.rename(old, name, src_dir_fd=directory, dst_dir_fd=directory)
                    else:
                        os.unlink(old, dir_fd=directory)
                raise
            if old is None:
                self.done.append((directory, name, None, False))
        self.staged = []  # every one moved in: nothing left to remove

    def roll_back(self) -> None:
        """Put every replaced file back and remove every created file and directory (best effort)."""
        for directory, name, old, _ in reversed(self.done):
            try:
                if old is None:
                    os.unlink(name, dir_fd=directory)
                else:
                    os.replace(old, name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError:
                self.leftovers.append((directory, old or name))
        self.done = []
        self._remove_staged()
        for parent, name in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=parent)
        for path in reversed(self.created_roots):
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def commit(self) -> None:
        """Drop the old copies once every new file is in."""
        for directory, _, old, _ in self.done:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.unlink(old, dir_fd=directory)

    def _remove_staged(self) -> None:
        for directory, staged, _ in self.staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged, dir_fd=directory)

    def close(self) -> None:
        self._remove_staged()
        for fd in self.fds.values():
            os.close(fd)


def write_files(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write all files or none: check every target can take a file and no symbolic link is on its way,
    stage each file beside its target (unless it already holds those bytes), then move them in. On any failure
    (permission, a full disk, a link that appeared meanwhile) the output is as it was and nothing is left behind."""
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"{out_dir}: is not a directory; the output root must be a directory")
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot be used as the output root ({exc.strerror})") from None
    blocked = list(dict.fromkeys(reason for relative in sorted(files) if (reason := _unwritable(out_dir, relative))))
    if blocked:
        raise UserError("nothing was written:\n" + "\n".join(f"  - {reason}" for reason in blocked))
    write = _Write(out_dir)
    try:
        for relative, content in sorted(files.items()):
            write.stage(relative, content)
        write.move_in()
    except OSError as exc:
        write.roll_back()
        appeared = exc.errno in (errno.ELOOP, errno.ENOTDIR) and _link_in_path(out_dir, write.current) is not None
        why = "a symbolic link appeared on its way" if appeared else exc.strerror or str(exc)
        left = (
            f"; {len(write.leftovers)} change(s) could not be undone, see {out_dir}"
            if write.leftovers
            else "; nothing was changed"
        )
        raise UserError(f"{out_dir / write.current}: cannot be written ({why}){left}") from None
    except BaseException:
        write.roll_back()
        raise
    else:
        write.commit()
    finally:
        write.close()
    return [out_dir / relative for relative in sorted(files)]


def drift_lines(drift: list[Drift]) -> list[str]:
    """What `render --check` says of the drift it found: a line a file (escaped, the first MAX_PROBLEMS),
    then what to do; nothing when there is none."""
    if not drift:
        return []
    lines = [
        f"out of date: {escape(item.path, limit=MAX_LINE)} ({escape(item.reason)})" for item in drift[:MAX_PROBLEMS]
    ]
    if len(drift) > MAX_PROBLEMS:
        lines.append(f"… and {len(drift) - MAX_PROBLEMS} more")
    return [*lines, "run `make render` (or `vllm-deploy render --all`) and commit the result"]
