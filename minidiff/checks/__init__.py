"""Exercise checkers with targeted feedback, one module per chapter.

Usage in an exercise notebook::

    from minidiff.checks import ch01
    ch01.check_q_sample(my_q_sample)
"""

from ._core import Case, CheckResult, Mistake, Spec, check_spec, run_check, strict_checks

__all__ = ["Case", "CheckResult", "Mistake", "Spec", "check_spec", "run_check", "strict_checks"]
