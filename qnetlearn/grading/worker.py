"""The grading worker: a fresh Python process that runs one test's cases.

``qn.exercises.grade`` (the notebooks' test cells) never runs the student's function in
the notebook's kernel.  It starts ``python -m qnetlearn.grading.worker`` in an empty
temporary directory, sends it the slot, the cases and the function (``ship.py``), and
reads back one JSON line per case.  So:

* the emulator the tests use is freshly imported: whatever the notebook patched or deleted
  in its own copy does not count, and what the student's function patches while it runs
  is undone after each case (module globals and class attributes of ``qnetlearn``);
* while the student's function runs, an audit hook refuses to open files outside Python's
  own installation and the package, to list directories, start processes, open sockets,
  load C code or rewrite the emulator's functions and classes: a function that tries to
  read the hidden tests (the course's notebooks, the gradebook) fails its own test;
* an endless loop is stopped by the slot's time limit, and anything worse (a loop that
  swallows the stop, a call stuck in C) by killing the worker: the test fails, grading
  goes on.  Output is capped both in the worker and by the reader here.

This is damage control for one notebook's tests, not a sandbox: the code runs with the
grader's user rights.  Run nbgrader's autograde as an unprivileged user (docs/grading.md).
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

#: seconds a whole grade() call may take before its worker is killed
DEFAULT_TOTAL_TIMEOUT = 60.0
#: what the reader keeps of the worker's stdout/stderr
KEEP_OUTPUT = 20_000
_MAX_RESULT = 4_000_000


# -- the kernel's side ---------------------------------------------------------------------

def _reader(stream: Any, keep: int, out: list[bytes]) -> None:
    got = 0
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        if got < keep:
            out.append(chunk[:keep - got])
        got += len(chunk)
    if got > keep:
        out.append(f"\n[... {got - keep:,} more bytes of output not kept]".encode())


def run_isolated(slot: str, fn: Callable[..., Any], items: list[Any],
                 timeout: float, total_timeout: float = DEFAULT_TOTAL_TIMEOUT
                 ) -> tuple[list[str], list[dict[str, Any]], str, str]:
    """Run public tests (names) and cases in a worker; returns (the cases in words, one
    result dict per case run, the worker's output, the grader's own problem if any)."""
    from . import ship
    import qnetlearn
    token = secrets.token_hex(16)
    payload = pickle.dumps({"slot": slot, "function": ship.pack(fn), "items": items,
                            "timeout": timeout, "token": token})
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(qnetlearn.__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    rfd, wfd = os.pipe()
    with tempfile.TemporaryDirectory(prefix="qnetlearn-grade-") as cwd:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qnetlearn.grading.worker", str(wfd)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, pass_fds=(wfd,), start_new_session=True)
        finally:
            os.close(wfd)
        output: list[bytes] = []
        result: list[bytes] = []
        readers = [threading.Thread(target=_reader, args=(proc.stdout, KEEP_OUTPUT, output),
                                    daemon=True),
                   threading.Thread(target=_reader,
                                    args=(os.fdopen(rfd, "rb"), _MAX_RESULT, result),
                                    daemon=True)]
        for t in readers:
            t.start()
        problem = ""
        try:
            assert proc.stdin is not None
            proc.stdin.write(payload)
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=total_timeout)
        except subprocess.TimeoutExpired:
            problem = (f"the grader stopped your code after {total_timeout:g} s "
                       "(it did not finish: an endless loop the time limit could not stop?)")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        for t in readers:
            t.join(timeout=5)
    texts: list[str] = []
    results = []
    for line in b"".join(result).decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict) or item.get("token") != token:
            continue
        if "cases" in item:
            texts = [str(t) for t in item["cases"]]
        else:
            results.append(item)
    if not problem and (not texts or len(results) < len(texts)):
        problem = (f"the grading process ended early (exit status {proc.returncode}): "
                   "your function ended it (sys.exit, os._exit...) or it ran out of memory")
    return texts, results, b"".join(output).decode("utf-8", "replace"), problem


# -- the worker's side ---------------------------------------------------------------------

_BLOCKED_PREFIXES = ("os.listdir", "os.scandir", "glob.", "os.chdir", "os.remove",
                     "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                     "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.",
                     "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                     "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.", "socket.",
                     "ctypes.", "sys.addaudithook", "signal.",
                     "sqlite3.", "_thread.start_new_thread", "os.putenv", "os.unsetenv",
                     "fcntl.", "mmap.__new__", "resource.setrlimit", "os.startfile",
                     "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.")


def _install_audit_hook(allowed_dirs: tuple[str, ...]) -> None:
    from .slots import _STUDENT_DEPTH
    depth = _STUDENT_DEPTH

    def hook(event: str, args: tuple) -> None:
        if not depth[0]:
            return
        if event == "open":
            path, mode = args[0], args[1]
            if isinstance(path, int):
                raise PermissionError("the grader does not let exercise code use file "
                                      "descriptors")
            p = os.path.realpath(os.fsdecode(path)) if path is not None else ""
            writing = mode is not None and any(c in str(mode) for c in "wax+")
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = writing or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing or not p.startswith(allowed_dirs):
                raise PermissionError(f"the grader does not let exercise code open {p!r}")
            return
        if event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"the grader does not let exercise code do {event}")
        if event in ("object.__setattr__", "object.__delattr__"):
            obj = args[0]
            mod = getattr(obj, "__module__", "") or ""
            if isinstance(mod, str) and mod.startswith("qnetlearn") and \
                    isinstance(obj, (type, type(hook))):
                raise PermissionError("the grader does not let exercise code rewrite the "
                                      f"emulator's {getattr(obj, '__qualname__', obj)}")

    sys.addaudithook(hook)


def _snapshot() -> dict[str, tuple[Any, dict[str, Any], dict[type, dict[str, Any]]]]:
    """The globals of every loaded module (builtins and the standard library included),
    and the class attributes of qnetlearn's classes."""
    snap = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or name == "__main__":
            continue
        try:
            d = vars(mod)
        except TypeError:
            continue
        ours = name == "qnetlearn" or name.startswith("qnetlearn.")
        classes = {v: dict(vars(v)) for v in d.values()
                   if ours and isinstance(v, type) and getattr(v, "__module__", "") == name}
        snap[name] = (mod, dict(d), classes)
    return snap


def _restore(snap: dict[str, tuple[Any, dict[str, Any], dict[type, dict[str, Any]]]]) -> None:
    from ..trace import state as _state
    from ..trace.tracepoint import REGISTRY
    for name, (mod, saved, classes) in snap.items():
        sys.modules[name] = mod
        d = vars(mod)
        for k in [k for k in d if k not in saved]:
            del d[k]
        for k, v in saved.items():
            if d.get(k, _MISSING) is not v:
                d[k] = v
        for cls, attrs in classes.items():
            if _state.JOURNAL is not None:
                continue          # a recorder swaps __setattr__ while it is attached
            now = vars(cls)
            for k in [k for k in now if k not in attrs]:
                try:
                    delattr(cls, k)
                except (AttributeError, TypeError):
                    pass
            for k, v in attrs.items():
                if now.get(k, _MISSING) is not v:
                    try:
                        setattr(cls, k, v)
                    except (AttributeError, TypeError):
                        pass
    for tp in REGISTRY:
        tp.orig = tp.pristine
        tp.handler = None
        tp.glob.pop(f"_qn_tp_{tp.index}", None)
        tp.func.__code__ = tp.code


_MISSING = object()


def _limit_resources() -> None:
    try:
        import resource
    except ImportError:                            # pragma: no cover - not Linux
        return
    for what, value in ((resource.RLIMIT_AS, 3 << 30), (resource.RLIMIT_FSIZE, 1 << 20),
                        (resource.RLIMIT_CORE, 0)):
        try:
            soft, hard = resource.getrlimit(what)
            if hard == resource.RLIM_INFINITY or hard > value:
                resource.setrlimit(what, (value, value if hard == resource.RLIM_INFINITY
                                          else min(hard, value)))
        except (ValueError, OSError):
            pass


def main(argv: list[str]) -> int:
    out = os.fdopen(int(argv[0]), "w", buffering=1)
    job = pickle.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    token = job.pop("token")

    def emit(item: dict[str, Any]) -> None:
        item["token"] = token
        out.write(json.dumps(item, default=repr) + "\n")
        out.flush()

    _limit_resources()
    from . import cases as _cases
    from . import scenarios as _scenarios      # noqa: F401 - loaded before the snapshot
    from . import ship
    from .compare import first_difference  # noqa: F401
    import qnetlearn.hw.net  # noqa: F401
    from .slots import get_slot
    slot = get_slot(job["slot"])
    slot.function                                # import the slot's module now
    import qnetlearn
    allowed = tuple(os.path.realpath(p) + os.sep for p in
                    {sys.prefix, sys.base_prefix, sys.exec_prefix,
                     os.path.dirname(os.__file__), os.path.dirname(qnetlearn.__file__)})
    from .exercises import expand
    try:
        cases = expand(job["slot"], job["items"])
        emit({"cases": [_cases.case_text(job["slot"], c) for c in cases]})
    except Exception as e:  # noqa: BLE001 - a test cell naming a test that does not exist
        emit({"cases": [f"{job['slot']}: {job['items']!r}"]})
        emit({"text": "", "passed": False, "kind": "error", "reason": f"bad test: {e}"})
        return 0
    snap = _snapshot()
    try:
        fn, missing = ship.unpack(job["function"])
    except Exception as e:  # noqa: BLE001
        for c in cases:
            emit({"text": _cases.case_text(job["slot"], c), "passed": False, "kind": "error",
                  "reason": f"the grader could not copy your function: {e}"})
        return 0
    from . import slots as _slots
    _slots.ALARM[0] = True
    _install_audit_hook(allowed)
    stop_rest = ""
    for case in cases:
        text = _cases.case_text(job["slot"], case)
        if stop_rest:
            emit({"text": text, "passed": False, "kind": "skipped", "reason": stop_rest})
            continue
        t0 = time.monotonic()
        try:
            r = _cases.compare_case(job["slot"], case, fn, timeout=job["timeout"])
            item = {"text": r.text, "passed": r.passed, "reason": r.reason, "kind": r.kind,
                    "detail": r.detail}
            if missing and "NameError" in r.reason:
                item["reason"] += (f" (the grader could not bring {', '.join(missing)} "
                                   "from your notebook: only functions, modules and plain "
                                   "values are copied)")
            if r.student is not None and r.student.errors and \
                    r.student.errors[0].kind == "timeout":
                stop_rest = "not run: an earlier case ran longer than the time limit"
        except BaseException as e:  # noqa: BLE001 - the grader must report, not die
            item = {"text": text, "passed": False, "kind": "crash",
                    "reason": f"grading this case failed: {type(e).__name__}: {e}"}
        item["seconds"] = round(time.monotonic() - t0, 3)
        _restore(snap)
        emit(item)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
