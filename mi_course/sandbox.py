"""Contain a learner's process: what it may use, see and touch.

Two layers, applied before any learner code runs and impossible for it to undo:

1. **Isolation**, when the grader runs as root (as in a container or on a CI machine):
   new Linux namespaces (`unshare`) give the learner's process its own process tree (so
   that killing its first process kills every process it started, fork bombs included),
   a network with nothing but a loopback interface that is down, and its own view of the
   file system, in which the folders the grader hides (reference solutions, hidden tests,
   other submissions, the gradebook) are empty, and /tmp and the learner's working folder
   are small private tmpfs mounts. The process then drops to a user id of its own, which
   owns nothing on the machine, so it can delete nothing and is held to its process limit.
2. **Resource limits** (`setrlimit`), always: address space, processes, file size,
   open files, no core dumps; and, for each exercise, CPU time.

Without root (a learner's laptop, an unprivileged course server) only the second layer
is available: the grade is still decided outside the learner's process, and time,
memory, CPU and file sizes are still limited, but the learner's code can read the files
the grader can read and open network connections, and a fork bomb is held only by the
process limit of the user. `Containment.describe()` says which layer was in force, and
the feedback and the gradebook record it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Limits", "Containment", "detect_containment", "isolate", "make_workdir", "remove_workdir", "apply_limits",
    "limit_cpu",
]

# From <linux/sched.h> and <sys/mount.h>.
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x20000000, 0x40000000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x1000, 0x4000, 1 << 18

SCRATCH = Path(tempfile.gettempdir())  # replaced by a private tmpfs inside an isolated sandbox


@dataclass(frozen=True)
class Limits:
    exercise_seconds: float = 60.0  # wall clock the learner's code may take, per exercise
    exercise_cpu_seconds: int = 60  # CPU time of the learner's process, per exercise
    cell_seconds: float = 60.0  # each notebook cell, while the notebook is loaded
    notebook_seconds: float = 300.0  # the whole notebook
    memory_bytes: int = 3 * 2**30  # address space on top of what Python and torch already map
    processes: int = 32  # processes and threads the learner's user may run at once
    file_bytes: int = 64 * 2**20  # the largest file the learner's code may write
    scratch_bytes: int = 128 * 2**20  # all of /tmp inside the sandbox (isolated mode)
    output_bytes: int = 64 * 2**20  # the largest answer one call may send back


@dataclass(frozen=True)
class Containment:
    isolated: bool  # namespaces, hidden folders and a user id of its own
    reason: str = ""  # why not, when not

    @property
    def name(self) -> str:
        return "isolated" if self.isolated else "limits only"

    def describe(self) -> str:
        if self.isolated:
            return ("isolated: own process tree, no network, hidden grader files, private /tmp, "
                    "unprivileged user; resource limits")
        return f"resource limits only ({self.reason})"


def detect_containment() -> Containment:
    """Isolation needs root and a kernel that lets it create namespaces: try, in a child."""
    if os.geteuid() != 0:
        return Containment(False, "the grader is not running as root, so it cannot create namespaces or switch users")
    pid = os.fork()
    if pid == 0:
        try:
            _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return Containment(False, "the kernel refused to create namespaces (a container without CAP_SYS_ADMIN?)")
    return Containment(True)


def isolate(hidden: list[Path], needed: list[Path], scratch_bytes: int) -> None:
    """In the sandbox's first process, as root: new namespaces (the next process forked is
    the first of a new process tree), the `hidden` folders emptied, and a private /tmp
    unless a `needed` folder (Python's, the course's) lives in it. Raises OSError if the
    kernel refuses."""
    _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here is seen outside
    _expose(needed)
    for folder in [*hidden, Path("/dev/shm"), Path("/var/tmp")]:
        if folder.is_dir():
            _mount("tmpfs", str(folder), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
    if not any(path.resolve().is_relative_to(SCRATCH.resolve()) for path in needed):
        _mount("tmpfs", str(SCRATCH), "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_bytes},mode=1777")


def _expose(needed: list[Path]) -> None:
    """Make the `needed` folders reachable for an unprivileged user, when they live in a
    private folder (Python installed under /root, say): cover that folder with an empty
    tmpfs, so that the rest of it stays hidden, and mount each needed folder back in it."""
    by_private: dict[Path, list[Path]] = {}
    for path in {p.resolve() for p in needed if p.exists()}:
        private = next((a for a in reversed(path.parents) if a != a.parent and not a.stat().st_mode & 0o001), None)
        if private is not None:
            by_private.setdefault(private, []).append(path)
    for private, paths in by_private.items():
        paths = [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]  # outermost only
        handles = {path: os.open(path, os.O_PATH) for path in paths}  # still reachable once covered
        _mount("tmpfs", str(private), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for path, handle in handles.items():
            path.mkdir(parents=True, exist_ok=True)
            _mount(f"/proc/self/fd/{handle}", str(path), None, MS_BIND | MS_REC)
            os.close(handle)


def make_workdir(uid: int | None, scratch_bytes: int, isolated: bool) -> Path:
    """The learner's working folder, owned by `uid`; in isolated mode a tmpfs of its own,
    so that what the learner writes is capped in total and vanishes with the sandbox."""
    workdir = Path(tempfile.mkdtemp(prefix="mi-course-sandbox-", dir=SCRATCH))
    if isolated:
        _mount("tmpfs", str(workdir), "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_bytes},mode=0700")
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def remove_workdir(workdir: Path, isolated: bool) -> None:
    if isolated:
        _libc.umount2(str(workdir).encode(), 2)  # MNT_DETACH
    shutil.rmtree(workdir, ignore_errors=True)


def apply_limits(limits: Limits, uid: int | None) -> None:
    """In the process that will run learner code, before it runs: switch to `uid` (if
    given, from root) and set hard resource limits, which an unprivileged process cannot raise."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    mapped = _mapped_bytes()
    _set_limit(resource.RLIMIT_AS, mapped + limits.memory_bytes)
    running = 0 if uid is not None else _processes_of(os.getuid())  # without a user of its own, count the user's
    _set_limit(resource.RLIMIT_NPROC, running + limits.processes)
    _set_limit(resource.RLIMIT_FSIZE, limits.file_bytes)
    _set_limit(resource.RLIMIT_NOFILE, 256)
    _set_limit(resource.RLIMIT_CORE, 0)


def limit_cpu(seconds: int) -> None:
    """At most `seconds` more of CPU time for this process: then the kernel sends SIGXCPU,
    which kills it."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime) + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))  # at the hard limit the kernel sends SIGKILL instead


def _set_limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _mapped_bytes() -> int:
    """The address space this process maps already (torch alone maps a lot of it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _processes_of(uid: int) -> int:
    """How many threads the user runs now: RLIMIT_NPROC counts them all."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encoded = [None if x is None else x.encode() for x in (source, target, fstype, data)]
    if _libc.mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3]) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")
