"""Entry point of the benchmark's measuring process: a pickled call on stdin, its result out.

``python -m edgeloop.runtime._child`` reads ``(args, kwargs)`` for ``_measure`` from stdin and
writes ``("ok", result)`` or ``("error", exception)`` to stdout, both pickled. A fresh
interpreter (not multiprocessing) keeps the caller's ``__main__`` out of it, so scripts without
an ``if __name__ == "__main__"`` guard can benchmark too.
"""

from __future__ import annotations

import pickle
import sys


def main() -> int:
    args, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        from edgeloop.runtime._bench import _measure

        reply: tuple[str, object] = ("ok", _measure(*args, **kwargs))
    except Exception as e:  # sent back and re-raised in the caller
        reply = ("error", e)
    sys.stdout.buffer.write(pickle.dumps(reply))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
