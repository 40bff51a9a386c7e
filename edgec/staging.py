"""Write an output directory and its tarball as one switch, or not at all.

Both are built in a hidden staging area beside the output (`.NAME.edgec-XXXX/`, holding an
`owner` file with the writer's pid), then renamed into place together while stop signals wait;
a failed rename puts the old ones back. A lock file beside the output (`.NAME.lock`) keeps two
edgec processes from writing it at once. edgec replaces only what it wrote itself: a bundle
directory holding nothing beyond its manifest's files and its reports, and the tarball of that
bundle."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from edgec import interrupts
from edgec.errors import EdgecError

MARKER = "manifest.json"  # what makes an existing directory an edgec bundle
REPORT_FILES = ("report.json", "report.md")  # written beside the manifest, not listed in it
OWNER = "owner"  # in a staging area: "edgec PID START HOST" of the process writing it
SHOWN = 5  # extra files named in a refusal

committed: list[Path] = []  # outputs this process switched into place, for a true last message
_locks: dict[Path, int] = {}  # outputs this process holds the lock of, and how deeply


def tarball_of(out: Path) -> Path:
    return out.with_name(out.name + ".tar.gz")


def check_replaceable(out: Path) -> None:
    """Refuse to replace anything edgec did not write: a directory that is not a bundle, a
    bundle holding files its manifest does not list, a tarball that is not this bundle's."""
    problem = _foreign_directory(out) or _foreign_tarball(out)
    if problem:
        raise EdgecError(f"{problem}; choose another -o, or add --force to replace it")


def check_not_a_home(out: Path) -> None:
    """Never replace, even with --force, a directory the user stands in or lives in."""
    where = out.resolve()
    cwd = Path.cwd().resolve()
    homes = {Path.home().resolve(), cwd, *cwd.parents}
    if where in homes or where == where.parent:
        what = "above the current one"
        if where == Path.home().resolve():
            what = "your home directory"
        elif where == where.parent:
            what = "the file system root"
        elif where == cwd:
            what = "the current directory"
        raise EdgecError(
            f"-o {out} is {what}; edgec replaces the whole output directory, so it never takes "
            f"that one, even with --force: give a new one, e.g. -o {out / 'bundle'}"
        )


def _foreign_directory(out: Path) -> str | None:
    if out.is_symlink():
        return f"{out} is a symbolic link, not a bundle edgec wrote"
    if not out.exists():
        return None
    if not out.is_dir():
        return f"{out} is a file, not a bundle edgec wrote"
    names = {p.name for p in out.iterdir()}
    if not names:
        return None
    listed = _manifest_files(out)
    if listed is None:
        held = _names(out, names)
        return f"{out} is not a bundle edgec wrote (no edgec manifest.json); it holds {held}"
    partials = {f".{name}.partial" for name in REPORT_FILES}  # a killed report write's
    extra = names - listed - {MARKER, *REPORT_FILES, *partials}
    if extra:
        return f"{out} holds files edgec did not write: {_names(out, extra)}"
    return None


def _names(out: Path, names: set[str]) -> str:
    shown = [
        f"{n}/" if (out / n).is_dir() and not (out / n).is_symlink() else n for n in sorted(names)
    ]
    more = f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else ""
    return ", ".join(shown[:SHOWN]) + more


def _manifest_files(out: Path) -> set[str] | None:
    """The file names an edgec manifest in `out` lists, or None if there is no such manifest."""
    try:
        manifest = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    files, versions = manifest.get("files"), manifest.get("versions")
    if not isinstance(files, dict) or not isinstance(versions, dict) or "edgec" not in versions:
        return None
    return {str(name) for name in files}


def _foreign_tarball(out: Path) -> str | None:
    """A tarball beside the bundle is edgec's if it archives that very bundle: its
    NAME/manifest.json is byte for byte the bundle's (which checksums every other file)."""
    archive = tarball_of(out)
    if not archive.exists() and not archive.is_symlink():
        return None
    if archive.is_symlink() or not archive.is_file():
        return f"{archive} is not a file edgec wrote"
    try:
        manifest = (out / MARKER).read_bytes() if out.is_dir() else None
    except OSError:
        manifest = None
    if manifest is not None and _archived_manifest(archive, out.name) == manifest:
        return None
    return f"{archive} is not the archive of the bundle {out} (edgec writes it beside the bundle)"


def _archived_manifest(archive: Path, name: str) -> bytes | None:
    wanted = f"{name}/{MARKER}"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # edgec writes the manifest first: this stops at once
                if member.name == wanted and member.isfile():
                    data = tar.extractfile(member)
                    return data.read() if data is not None else None
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        return None
    return None


IN_PLACE = "copy the bundle where you can write"  # advice when edgec updates a bundle in place


@contextmanager
def output_lock(out: Path, advice: str = "choose another -o") -> Iterator[None]:
    """Hold `.NAME.lock` beside `out` (flock); another edgec writing `out` is refused in one
    line rather than waited for: a second build of the same output would only overwrite the
    first, and a wait of minutes with no output looks like a hang."""
    key = out.absolute()
    if key in _locks:  # this process holds it already (edgec run inside a build, say)
        _locks[key] += 1
        try:
            yield
        finally:
            _locks[key] -= 1
        return
    lock = out.with_name(f".{out.name}.lock")
    fd = None
    try:
        with interrupts.held():  # a signal now would leave the lock file: it waits a moment
            fd = _acquire(lock, out, advice)
            _locks[key] = 1
        yield
    finally:
        if fd is not None:
            del _locks[key]
            with suppress(OSError):
                lock.unlink()  # before the unlock: a waiter then sees a stale inode, retries
            os.close(fd)


def _acquire(lock: Path, out: Path, advice: str) -> int:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise disk_error(out, e, advice) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EdgecError(
                f"another edgec (pid {holder}) is writing {out}; wait for it to finish or {advice}"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the previous holder removed it as we opened it: take a fresh one


def disk_error(out: Path, e: OSError, advice: str = "choose another -o") -> EdgecError:
    """One line naming the user's path and the cause, never edgec's hidden staging path."""
    space = f"free some space or {advice}"
    cause = {
        errno.ENOSPC: f"the disk is full; {space}",
        errno.EDQUOT: f"the disk quota is exceeded; {space}",
        errno.EFBIG: f"a file grew past the size allowed; {space}",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "the operation is not permitted there",
        errno.ENOTDIR: f"{_first_file(out)} is a file, not a directory",
        errno.EEXIST: f"{_first_file(out)} is a file, not a directory",
        errno.ENOENT: f"{out.parent} does not exist and cannot be made",
        errno.EXDEV: "it is a mount point edgec cannot rename over",
        errno.EBUSY: "it is in use (a mount point?)",
    }.get(e.errno or 0, (e.strerror or str(e)).lower())
    if space not in cause:
        cause += f"; {advice}"
    return EdgecError(f"cannot write {out}: {cause}")


def _first_file(out: Path) -> Path:
    for parent in reversed([out, *out.parents]):
        if parent.exists() and not parent.is_dir():
            return parent
    return out.parent


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


@contextmanager
def staged_directory(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty directory; if the block succeeds it becomes `out`, and its tarball
    `out.tar.gz`, both at once. Otherwise neither changes."""
    check_not_a_home(out)
    if not force:
        check_replaceable(out)  # before the lock: a refusal must not leave a lock file
    with output_lock(out):
        if not force:
            check_replaceable(out)  # again: another edgec may have written it meanwhile
        remove_stale_staging(out)
        area = None
        try:
            with interrupts.held():  # a signal between mkdtemp and this try would leave it
                area = _staging_area(out)
            work = area / out.name
            work.mkdir(mode=0o755)  # a bundle is meant to be shared and copied
            try:
                yield work
            except EdgecError as e:
                _rename_in_message(e, work, out)
                raise
            except OSError as e:
                if _inside(e, area) or (e.errno in ENVIRONMENT_ERRNOS and not _elsewhere(e)):
                    raise disk_error(out, e) from e
                raise
            try:
                write_archive(work, area / tarball_of(out).name)
                _switch([(work, out), (area / tarball_of(out).name, tarball_of(out))], area)
            except OSError as e:
                raise disk_error(out, e) from e
            committed.append(out)
        finally:
            if area is not None:
                with interrupts.held():
                    shutil.rmtree(area, ignore_errors=True)


def update_bundle(bundle: Path, files: dict[str, bytes]) -> None:
    """Replace some files of an existing bundle (its reports) and its tarball, all at once."""
    with output_lock(bundle, IN_PLACE):
        if problem := _foreign_tarball(bundle):
            raise EdgecError(f"{problem}; move it away: edgec rewrites the tarball beside a bundle")
        remove_stale_staging(bundle)
        area = None
        try:
            with interrupts.held():  # a signal between mkdtemp and this try would leave it
                area = _staging_area(bundle, IN_PLACE)
            staged = area / "bundle"
            staged.mkdir()
            for name, data in files.items():
                (staged / name).write_bytes(data)
            archive = area / tarball_of(bundle).name
            write_archive(bundle, archive, replaced=staged)
            moves = [(staged / name, bundle / name) for name in files]
            _switch([*moves, (archive, tarball_of(bundle))], area)
        except OSError as e:
            raise disk_error(bundle, e, IN_PLACE) from e
        finally:
            if area is not None:
                with interrupts.held():
                    shutil.rmtree(area, ignore_errors=True)


def write_tarball(bundle: Path) -> Path:
    """BUNDLE.tar.gz beside the bundle directory, replaced atomically."""
    update_bundle(bundle, {})
    return tarball_of(bundle)


def write_archive(directory: Path, archive: Path, replaced: Path | None = None) -> None:
    """A .tar.gz of `directory` as NAME/..., manifest first (so an ownership check reads only
    the first member); files present in `replaced` are taken from there instead."""
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    if replaced is not None:
        names = sorted({*names, *(p.name for p in replaced.iterdir())})
    names.sort(key=lambda n: n != MARKER)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=directory.name, recursive=False)
        for name in names:
            source = (
                replaced / name if replaced and (replaced / name).exists() else directory / name
            )
            tar.add(source, arcname=f"{directory.name}/{name}")


def _switch(moves: list[tuple[Path, Path]], area: Path) -> None:
    """Move each staged path over its destination; the old ones go into `area`. All renames
    happen with stop signals held (where edgec's handler is installed), and a failed or
    interrupted one undoes those before it."""
    done: list[tuple[Path, Path]] = []
    with interrupts.held():
        try:
            for i, (new, dest) in enumerate(moves):
                if dest.exists() or dest.is_symlink():
                    old = area / f"old-{i}"
                    os.rename(dest, old)
                    done.append((dest, old))
                os.rename(new, dest)
                done.append((new, dest))
        except BaseException:  # an OSError, or a plain Ctrl-C where no handler defers it
            for source, moved in reversed(done):
                with suppress(OSError):
                    os.rename(moved, source)
            raise


def _staging_area(out: Path, advice: str = "choose another -o") -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        area = Path(tempfile.mkdtemp(prefix=f".{out.name}.edgec-", dir=out.parent))
        pid = os.getpid()
        start = interrupts.start_time(pid) or "-"
        (area / OWNER).write_text(f"edgec {pid} {start} {socket.gethostname()}\n")
    except OSError as e:
        raise disk_error(out, e, advice) from e
    return area


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove staging areas beside `out` that an edgec process left when it was killed: each
    has an owner file naming a pid on this host that no longer runs (or now is another
    process). An area written from another host (a shared disk) is left alone."""
    removed = []
    for area in out.parent.glob(f".{out.name}.edgec-*"):
        try:
            word, pid, start, host = (area / OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not a staging area edgec can vouch for: leave it
        if word != "edgec" or not pid.isdigit() or area.is_symlink():
            continue
        if host != socket.gethostname():
            continue
        if not interrupts.alive(int(pid), None if start == "-" else start):
            shutil.rmtree(area, ignore_errors=True)
            removed.append(area)
    return removed


def _rename_in_message(e: EdgecError, work: Path, out: Path) -> None:
    """Make the error name the output the user chose rather than the staging directory."""
    text = str(e)
    if str(work) in text:
        e.args = (text.replace(str(work), str(out)), *e.args[1:])


def _inside(e: OSError, area: Path) -> bool:
    names = [n for n in (e.filename, e.filename2) if n is not None]
    return any(str(n).startswith(str(area)) for n in names)


def _elsewhere(e: OSError) -> bool:
    return e.filename is not None


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename."""
    replace_bytes(path, text.encode("utf-8"))


def replace_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and a rename."""
    replace_written(path, lambda partial: partial.write_bytes(data))


def replace_written(path: Path, write: Callable[[Path], object]) -> None:
    """Replace `path` by what `write` writes to the temporary path it is given: readers see the
    old file or the whole new one, and a failed or interrupted write leaves no partial file."""
    if not path.parent.is_dir():
        raise EdgecError(f"cannot write {path}: {path.parent} is not a directory")
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        partial.replace(path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise disk_error(path, e, "choose another path") from e
    except BaseException:  # Ctrl-C, SIGTERM: no .partial left behind
        partial.unlink(missing_ok=True)
        raise
