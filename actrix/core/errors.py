"""One exception object per raiser.

An exception raised more than once (handed to every waiter of a shared load,
or kept in a cache and raised on each hit) collects every raiser's frames on
its ``__traceback__``, and whoever holds it keeps them all alive. Give each
waiter :func:`own_copy` instead.
"""

from __future__ import annotations

import copy


def own_copy(error: BaseException) -> BaseException:
    """A new exception like ``error`` (same type and arguments), no traceback.

    An exception whose constructor cannot be replayed from its ``args`` is
    replaced by a plain :class:`RuntimeError` carrying its text.
    """
    try:
        fresh = copy.copy(error)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    fresh.__traceback__ = None
    fresh.__cause__ = fresh.__context__ = None
    return fresh
