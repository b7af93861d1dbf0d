"""Contain a learner's process: what it may see, use and touch.

Two layers, set up before any learner code runs and impossible for it to undo:

1. **A view built from an allow-list**, by bubblewrap (`bwrap`, the sandbox Flatpak
   uses): an empty root into which only what a notebook needs is bind-mounted read-only
   (the system's `/usr`, Python and its installed packages, the course's `toy_models`
   with its checkpoints, and the grading side's own `mi_course`), a private size-capped
   `/tmp`, a fresh `/proc` for a process tree of its own, a minimal `/dev`, and a network
   with nothing in it. The course's `graders`, `solutions` and `tests`, the repository's
   `.git`, the submissions and every instructor folder are absent wherever they sit,
   because nothing but the allow-list is there. As root, the learner's process also runs
   as a user id of its own, fresh for each student, which owns no file on the machine;
   without root, bubblewrap makes the same view through an unprivileged user namespace.
2. **Resource limits** (`setrlimit`): address space, processes, file size, open files,
   no core dumps, and CPU time for each exercise.

bubblewrap builds the view and holds its namespaces open with a process that only
sleeps (`IsolatedView`); the grader's pre-imported zygote forks a process that joins
those namespaces (`enter`) and starts the learner's process inside them, so that torch
is imported once per grading run, not once per student. When the sandbox ends, its first
process dies, and the kernel kills every process left in its process tree.

Where no namespace can be made (bubblewrap missing, a kernel or container that refuses
user namespaces), only the second layer is in force, the grader says so loudly, and the
learner's code can then read whatever the grader's user can read.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mi_course.runtime.paths import REPO_ROOT, package_dirs

__all__ = [
    "Limits", "Containment", "IsolatedView", "IsolationFailed", "detect_containment", "enter", "apply_limits",
    "limit_cpu", "make_workdir", "remove_workdir", "end_processes",
]

#: The course's packages a notebook imports; everything else of the repository stays out of the view.
VISIBLE_PACKAGES = ("toy_models", "mi_course")
HIDDEN_PACKAGES = ("graders", "solutions", "tests")
#: The learner's scratch folder inside the view (a private tmpfs); its home and working folder.
SCRATCH = Path("/tmp")
#: The sandbox's first process, which holds its namespaces open and does nothing else.
HOLDER_COMMAND = ("sleep", "infinity")
#: From <linux/nsfs.h>: the user namespace that owns a namespace.
NS_GET_USERNS = 0xB701


@dataclass(frozen=True)
class Limits:
    exercise_seconds: float = 60.0  # wall clock the learner's code may take, per exercise
    exercise_cpu_seconds: int = 60  # CPU time of the learner's process, per exercise
    cell_seconds: float = 60.0  # each notebook cell, while the notebook is loaded
    notebook_seconds: float = 300.0  # the whole notebook
    student_seconds: float = 900.0  # everything of one student: loading, reloading, every exercise
    reloads: int = 1  # times a notebook is run again after its process was killed
    memory_bytes: int = 3 * 2**30  # address space on top of what Python and torch already map
    processes: int = 32  # processes and threads the learner's user may run at once
    file_bytes: int = 64 * 2**20  # the largest file the learner's code may write
    scratch_bytes: int = 128 * 2**20  # all of /tmp inside the sandbox
    output_bytes: int = 64 * 2**20  # the largest answer one call may send back


@dataclass(frozen=True)
class Containment:
    mode: str  # "isolated as root", "isolated" or "limits only"
    reason: str = ""  # why not isolated, when not

    @property
    def isolated(self) -> bool:
        return self.mode != "limits only"

    @property
    def as_root(self) -> bool:
        return self.mode == "isolated as root"

    @property
    def name(self) -> str:
        return self.mode

    def describe(self) -> str:
        if self.as_root:
            return ("isolated (bubblewrap): a view of only what notebooks need, own process tree, no network, "
                    "private /tmp, a user id of its own; resource limits")
        if self.isolated:
            return ("isolated (bubblewrap, user namespace): a view of only what notebooks need, own process tree, "
                    "no network, private /tmp; resource limits")
        return f"resource limits only ({self.reason})"


class IsolationFailed(OSError):
    """bubblewrap could not build a sandbox: the grader's machine, not the learner, is at fault."""


def detect_containment() -> Containment:
    """Isolated if bubblewrap can build a sandbox here (as root, or through a user namespace)."""
    if shutil.which("bwrap") is None:
        return Containment("limits only", "bubblewrap is not installed (apt-get install bubblewrap)")
    as_root = os.geteuid() == 0
    try:
        IsolatedView(as_root=as_root, scratch_bytes=2**20).close()
    except IsolationFailed as error:
        return Containment("limits only", f"bubblewrap could not build a sandbox: {error}")
    return Containment("isolated as root" if as_root else "isolated")


# --------------------------------------------------------------------------- the view

def view_arguments(*, as_root: bool, scratch_bytes: int, hidden: tuple[Path, ...] = ()) -> list[str]:
    """bubblewrap's arguments for the learner's view: only the allow-list, read-only, and
    no path in `hidden` (nor the course's hidden packages) even where it lies inside it."""
    namespaces = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        namespaces.append("--unshare-user")  # the unprivileged way to get the others
    arguments = ["bwrap", "--die-with-parent", "--new-session", "--as-pid-1", *namespaces, "--clearenv"]
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):  # merged /usr: keep the links, which point into /usr
            arguments += ["--symlink", os.readlink(path), path]
    # The writable places first: a checkout or a virtual environment under /tmp is then
    # bound inside the private /tmp, not hidden by it.
    arguments += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(scratch_bytes),
                  "--tmpfs", str(SCRATCH), "--size", str(2**16), "--tmpfs", "/dev/shm"]
    denied = {Path(p).resolve() for p in (*hidden, *_hidden_course_paths())}
    sources = [source for path in _allowed_paths() for source in _bindable(path, denied)]
    # The folders on the way to each source, made searchable by anyone (bubblewrap would
    # make them private to root, and the learner's own user could not reach what they hold).
    for folder in sorted({parent for source in sources for parent in source.parents} - {Path("/"), SCRATCH}):
        arguments += ["--perms", "0755", "--dir", str(folder)]
    for source in sources:
        arguments += ["--ro-bind", str(source), str(source)]
    return [*arguments, "--remount-ro", "/"]


def _allowed_paths() -> list[Path]:
    """What a notebook needs: the system's programs and libraries, Python with its
    installed packages, and the course's visible packages (wherever they are installed)."""
    system = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
              if os.path.isdir(p) and not os.path.islink(p)]
    etc = [Path("/etc") / name for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "fonts",
                                             "localtime", "mime.types")]
    python = [Path(sys.base_prefix), Path(sys.prefix), *map(Path, site.getsitepackages())]
    packages = [location for name in VISIBLE_PACKAGES for location in package_dirs(name)]
    return [path.resolve() for path in (*system, *etc, *python, *packages) if path.exists()]


def _hidden_course_paths() -> list[Path]:
    """The course's packages that hold references and hidden tests, wherever installed,
    and the repository's own folders that no notebook needs."""
    checkout = [REPO_ROOT / name for name in (".git", "tests", "instructor", "course", "bench", "solutions", "graders")]
    return [*checkout, *(location for name in HIDDEN_PACKAGES for location in package_dirs(name))]


def _bindable(path: Path, denied: set[Path]) -> list[Path]:
    """`path` itself if nothing denied lies inside it; else those of its entries that are
    not denied, each checked the same way. An allow-list that never reaches a denied path."""
    if path in denied:
        return []
    if not any(d.is_relative_to(path) for d in denied) or not path.is_dir() or path.is_symlink():
        return [path]
    return [source for entry in sorted(path.iterdir()) for source in _bindable(entry, denied)]


class IsolatedView:
    """One sandbox's namespaces and view, made by bubblewrap and held open by a process
    that only sleeps, as the first process of the sandbox's process tree: killing it (or
    the grader that started it) ends every process in the sandbox."""

    def __init__(self, *, as_root: bool, scratch_bytes: int, hidden: tuple[Path, ...] = ()):
        read_info, write_info = os.pipe()
        arguments = view_arguments(as_root=as_root, scratch_bytes=scratch_bytes, hidden=hidden)
        self.process = subprocess.Popen(
            [*arguments, "--info-fd", str(write_info), "--", *HOLDER_COMMAND],
            pass_fds=[write_info], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.close(write_info)
        try:
            self.pid = int(json.loads(_read_until_closed(read_info, timeout=30))["child-pid"])
            _wait_for_exec(self.pid, HOLDER_COMMAND, timeout=30)
        except (ValueError, KeyError, TypeError, OSError):
            self.close()
            message = self.process.stderr.read().decode(errors="replace").strip() or "no reason given"
            raise IsolationFailed(message[:500]) from None
        finally:
            os.close(read_info)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stderr.close()


def _wait_for_exec(pid: int, command: tuple[str, ...], *, timeout: float) -> None:
    """bubblewrap names its child before it builds the view; the view is complete once the
    child runs `command`. OSError if it never does."""
    expected, deadline = "".join(f"{part}\0" for part in command).encode(), time.monotonic() + timeout
    while Path(f"/proc/{pid}/cmdline").read_bytes() != expected:
        if time.monotonic() > deadline:
            raise OSError(f"the sandbox's first process did not start within {timeout:g} s")
        time.sleep(0.001)


def _read_until_closed(fd: int, *, timeout: float) -> bytes:
    """What bubblewrap writes on its info descriptor (it closes it once the sandbox runs)."""
    chunks, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- entering it

def enter(holder_pid: int, *, as_root: bool) -> None:
    """Move this (single-threaded) process into the sandbox whose first process is
    `holder_pid`: its mount, network, IPC, UTS and cgroup namespaces now, its process tree
    for the children it forks from now on. Without root, first the user namespace that owns
    them (to be allowed in) and last the sandbox's own nested one, which owns none of them,
    so that nothing this process starts can change the view."""
    handles = {kind: os.open(f"/proc/{holder_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
               for kind in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")}
    handles["root"] = os.open(f"/proc/{holder_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not as_root:
            owner = fcntl.ioctl(handles["mnt"], NS_GET_USERNS)
            try:
                if os.fstat(owner).st_ino == os.fstat(handles["user"]).st_ino:
                    raise IsolationFailed("bubblewrap gave the sandbox no user namespace of its own")
                _setns(owner)
            finally:
                os.close(owner)
        for kind in ("ipc", "uts", "net", "cgroup", "pid", "mnt"):
            if os.fstat(handles[kind]).st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino:
                _setns(handles[kind])
        # Joining a mount namespace leaves this process at its original root, which
        # bubblewrap replaced: go to the sandbox's root, as nsenter --root does.
        os.fchdir(handles["root"])
        os.chroot(".")
        if not as_root:
            _setns(handles["user"])
    finally:
        for handle in handles.values():
            os.close(handle)
    os.chdir(SCRATCH)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns arrives in Python 3.12; the course supports 3.11.
    if _libc.setns(fd, 0) != 0:
        errno = ctypes.get_errno()
        raise IsolationFailed(errno, f"setns: {os.strerror(errno)}")


# --------------------------------------------------------------------------- limits

def make_workdir(uid: int | None) -> Path:
    """The learner's working folder when not isolated (inside a sandbox it is /tmp)."""
    workdir = Path(tempfile.mkdtemp(prefix="mi-course-learner-"))
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


def end_processes(uid: int | None, group: int) -> None:
    """When not isolated, what a learner's process started and left running: every process
    of its own `uid` (from root: that user runs nothing else, and the kernel's `kill(-1)`
    reaches all of them at once, however fast they fork), else only its process `group`,
    which a process that starts a session of its own leaves."""
    if uid is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)  # now it may signal exactly that user's processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


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
