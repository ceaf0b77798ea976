"""Run the compiler with room to recurse.

The compiler's passes recurse over the syntax tree, so a left-deep chain of
thousands of terms, or a few hundred nested blocks, can exceed Python's
default recursion limit and the main thread's C stack. Compiling in a worker
thread with a large stack (its pages are only committed as they are used) and
a matching recursion limit lets every tree the parser accepts
(parser.MAX_NESTING) compile. The caller still sees Ctrl-C at once: it waits
in short slices, and an abandoned worker is a daemon thread.
"""
from __future__ import annotations

import sys
import threading

STACK_BYTES = 512 * 1024 * 1024
RECURSION_LIMIT = 200_000
_lock = threading.Lock()
_local = threading.local()


def call_with_deep_stack(fn, *args, **kwargs):
    if getattr(_local, "inside", False):  # already on a deep stack (a nested compile)
        return fn(*args, **kwargs)
    result: dict = {}

    def work():
        _local.inside = True
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    # The stack size and the recursion limit are process-wide: set them for
    # this compile only, one compile at a time.
    # The limit is raised before the worker starts: it may run to the end before
    # this thread is scheduled again.
    with _lock:
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
        try:
            old_size = threading.stack_size(STACK_BYTES)
            try:
                worker = threading.Thread(target=work, name="tilegrid-compile", daemon=True)
                worker.start()
            finally:
                threading.stack_size(old_size)
            while worker.is_alive():
                worker.join(0.05)
        finally:
            sys.setrecursionlimit(old_limit)
    if "error" in result:
        raise result["error"]
    return result["value"]
