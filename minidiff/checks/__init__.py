"""Exercise checkers with targeted feedback, one module per chapter.

Usage in an exercise notebook::

    from minidiff.checks import ch01
    ch01.check_q_sample(my_q_sample)

``finish_first`` wraps a notebook's "put it together" cell, so that it prints a friendly note
instead of a traceback while some function is still a stub.
"""

from ._core import (
    Case,
    CheckResult,
    Mistake,
    ReturnError,
    Spec,
    check_spec,
    finish_first,
    returned_number,
    returned_tensor,
    run_check,
    strict_checks,
)

__all__ = [
    "Case",
    "CheckResult",
    "Mistake",
    "ReturnError",
    "Spec",
    "check_spec",
    "finish_first",
    "returned_number",
    "returned_tensor",
    "run_check",
    "strict_checks",
]
