"""The shape of the package's code, per module: lines, complexity, duplicates, argument checks.

    .venv/bin/python bench/code_shape.py                      # this checkout
    .venv/bin/python bench/code_shape.py --repo /path/to/another/checkout
    .venv/bin/python bench/code_shape.py --top 15             # the most complex functions too

Columns (one row per module of ``minidiff/``, totals last):

- ``lines``: physical lines of the file.
- ``max cc``: the largest cyclomatic complexity of a function or method (radon's count; needs
  ``pip install radon``, else ``-``), and the function's name.
- ``dup pairs``: pairs listed by the ``duplicates`` tool (runs of six or more lines of the same
  shape) that have a side in this module (``-`` when the tool is not installed). The total counts
  each pair once.
- ``public fns``: public functions and public methods of public classes.
- ``check lines``: lines of those functions' bodies that check arguments: a call of a
  ``check_*``/``_check*`` helper, or an ``if ...: raise TypeError/ValueError`` block.
- ``body lines``: lines of those bodies (docstrings excluded).
- ``check %``: check lines / body lines: how much of what a reader reads below the ``def`` is
  argument checking rather than the computation.
- ``contract lines``: lines of ``@checked(...)`` declarations above the ``def`` (the checks
  declared instead of written out), counted apart.

The totals of the check columns leave out ``_validation.py``, whose public functions are the
checks themselves.

Reads the files as text (``ast``); imports nothing from the package.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="checkout")
parser.add_argument("--top", type=int, default=0, help="also list the N most complex functions")
args = parser.parse_args()
PKG = Path(args.repo) / "minidiff"

CHECK_CALL = re.compile(r"^_?check|^_prepare$|^_require|^_validate")
ARG_ERRORS = {"TypeError", "ValueError"}


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name):
            return f.id
        if isinstance(f, ast.Attribute):
            return f.attr
    return ""


def _raises_arg_error(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Raise) or stmt.exc is None:
        return False
    exc = stmt.exc
    name = _call_name(exc) if isinstance(exc, ast.Call) else getattr(exc, "id", "")
    return name in ARG_ERRORS


def _is_check(stmt: ast.stmt) -> bool:
    """An argument check: a guard that raises TypeError/ValueError, or a check_* call."""
    if isinstance(stmt, ast.If) and stmt.body and all(_raises_arg_error(s) for s in stmt.body):
        return not stmt.orelse or all(_is_check(s) for s in stmt.orelse)
    if isinstance(stmt, ast.Expr | ast.Assign | ast.AnnAssign):
        value = stmt.value
        if isinstance(value, ast.Tuple):
            return bool(value.elts) and all(CHECK_CALL.search(_call_name(v)) for v in value.elts)
        return value is not None and bool(CHECK_CALL.search(_call_name(value)))
    return False


def _lines(node: ast.AST) -> int:
    return int(node.end_lineno or node.lineno) - int(node.lineno) + 1  # type: ignore[attr-defined]


def _contract_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return sum(
        _lines(d) for d in fn.decorator_list if _call_name(d) in ("checked", "contract", "checks")
    )


def _body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return body


def _public_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    out: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith(
            "_"
        ):
            out.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    not item.name.startswith("_") or item.name == "__init__"
                ):
                    out.append(item)
    return out


def _check_lines(stmts: list[ast.stmt]) -> int:
    return sum(_lines(s) for s in stmts if _is_check(s))


def module_shape(path: Path) -> dict[str, object]:
    src = path.read_text()
    tree = ast.parse(src)
    checks = body = contract = 0
    fns = _public_functions(tree)
    for fn in fns:
        stmts = _body(fn)
        contract += _contract_lines(fn)
        checks += _check_lines(stmts)
        body += sum(_lines(s) for s in stmts)
    return {
        "lines": len(src.splitlines()),
        "fns": len(fns),
        "checks": checks,
        "body": body,
        "contract": contract,
    }


def complexity(path: Path) -> list[tuple[int, str]]:
    try:
        from radon.complexity import cc_visit
    except ImportError:
        return []
    out = []
    for block in cc_visit(path.read_text()):
        name = (
            f"{block.classname}.{block.name}" if getattr(block, "classname", None) else block.name
        )
        out.append((int(block.complexity), name))
        for closure in getattr(block, "closures", []):
            out.append((int(closure.complexity), f"{name}.{closure.name}"))
    return out


def duplicate_pairs() -> tuple[int | None, list[tuple[str, str]]]:
    tool = shutil.which("duplicates")
    if tool is None:
        return None, []
    res = subprocess.run(
        [tool, "--most", "200", "--seconds", "120"],
        cwd=PKG,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = res.stdout.splitlines()
    head = re.match(r"(\d+) pairs", lines[0]) if lines else None
    total = int(head.group(1)) if head else 0
    pairs = []
    for line in lines[1:]:
        m = re.match(r"D\d+ (\S+):\d+-\d+ ~ (\S+):\d+-\d+", line)
        if m:
            pairs.append((m.group(1), m.group(2)))
    return total, pairs


def main() -> None:
    files = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
    total_dups, pairs = duplicate_pairs()
    print(f"minidiff from {args.repo}\n")
    print(
        "| module | lines | max cc (function) | dup pairs | public fns | check lines | "
        "body lines | check % | contract lines |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    tot = {"lines": 0, "fns": 0, "checks": 0, "body": 0, "contract": 0}
    all_cc: list[tuple[int, str]] = []
    for path in files:
        rel = path.relative_to(PKG).as_posix()
        shape = module_shape(path)
        for k in tot:
            if rel != "_validation.py" or k in ("lines", "fns"):
                tot[k] += int(shape[k])  # type: ignore[call-overload]
        cc = complexity(path)
        all_cc += [(c, f"{rel}:{n}") for c, n in cc]
        top = max(cc) if cc else None
        cc_text = f"{top[0]} ({top[1]})" if top else "-"
        dups = "-" if total_dups is None else str(sum(rel in p for p in pairs))
        body = int(shape["body"])  # type: ignore[call-overload]
        pct = f"{100 * int(shape['checks']) / body:.0f}" if body else "-"  # type: ignore[call-overload]
        print(
            f"| {rel} | {shape['lines']} | {cc_text} | {dups} | {shape['fns']} | "
            f"{shape['checks']} | {body} | {pct} | {shape['contract']} |"
        )
    over = sum(c > 20 for c, _ in all_cc)
    worst = f"{max(all_cc)[0]}" if all_cc else "-"
    pct = 100 * tot["checks"] / tot["body"] if tot["body"] else 0.0
    dtxt = "-" if total_dups is None else str(total_dups)
    print(
        f"| **total** | {tot['lines']} | {worst} (functions > 20: {over}) | {dtxt} | "
        f"{tot['fns']} | {tot['checks']} | {tot['body']} | {pct:.0f} | {tot['contract']} |"
    )
    if args.top:
        print(f"\n| cyclomatic complexity | function (top {args.top}) |\n|---:|---|")
        for c, name in sorted(all_cc, reverse=True)[: args.top]:
            print(f"| {c} | {name} |")


if __name__ == "__main__":
    main()
