"""A failure as one plain line: Ray wraps a worker's exception in layers of its own; the cause a user
needs (the non-finite step, the unsent metric points, else the last line) is dug out of them."""
from __future__ import annotations

import re


def unwrap_failure(exc: BaseException) -> str:
    """The NaN step, the unsent points, or the root message of `exc`."""
    text = str(exc)
    m = re.search(r"non-finite loss at step \d+[^\n]*", text) or re.search(r"\d+ metric points and \d+ images not sent[^\n]*", text)
    return m.group(0) if m else text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
