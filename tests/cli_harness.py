"""Run the real command lines on hostile inputs and check they behave.

Every hostile-input case (tests/test_hostile_*.py) runs a tool in a subprocess with the
current directory set to a scratch folder, then asserts:

* the exit code (2 for a refused input);
* stderr holds exactly one non-empty line, starting with ``error:``, and no traceback;
* no file that existed before changed (SHA-256 of every file, before and after), over the
  scratch folder, the current directory and any extra root;
* nothing appeared except the outputs the case allows (paths relative to the scratch folder).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tree(root: str) -> Dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (folders listed as 'dir')."""
    out = {}
    for base, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(base, d), root)] = "dir"
        for f in files:
            path = os.path.join(base, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def tool_env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("GLOG_v", "3")
    env.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_tool(argv: Sequence[str], cwd: str, env: Optional[dict] = None, timeout: int = 600):
    """``argv[0]`` is a script under the repository (``tools/stylize.py``) or ``-m module``."""
    cmd = [sys.executable] + ([os.path.join(REPO, argv[0])] if argv[0].endswith(".py") else [argv[0]]) + list(argv[1:])
    return subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout)


def error_lines(proc) -> List[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_one_line_error(proc, *fragments: str, code: int = 2):
    lines = error_lines(proc)
    detail = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == code, detail
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, detail
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, detail
    for fragment in fragments:
        assert fragment.lower() in errors[0].lower(), f"{fragment!r} not in {errors[0]!r}\n{detail}"
    return errors[0]


@dataclasses.dataclass
class Case:
    """One hostile input: ``make(tmp)`` lays out files in ``tmp`` and returns the argv."""

    name: str
    make: Callable[[str], List[str]]
    fragments: Sequence[str] = ()  # what the error line must say
    code: int = 2
    allowed_new: Sequence[str] = ()  # paths (relative to tmp) a run may create
    strict_stderr: bool = True  # the only stderr line is the error (False: progress lines may precede it)

    def __str__(self):
        return self.name


def check_case(case: Case, tmp: str, extra_roots: Sequence[str] = (), env: Optional[dict] = None):
    """Run ``case`` in ``tmp`` (also its cwd) and assert the contract above."""
    argv = case.make(tmp)
    roots = [tmp] + list(extra_roots)
    before = [tree(r) for r in roots]
    proc = run_tool(argv, cwd=tmp, env=env)
    if case.code == 2:
        if case.strict_stderr:
            assert len(error_lines(proc)) == 1, f"stderr:\n{proc.stderr[-4000:]}"
        assert_one_line_error(proc, *case.fragments, code=case.code)
    else:
        assert proc.returncode == case.code, proc.stderr[-4000:]
    for root, old in zip(roots, before):
        new = tree(root)
        changed = [p for p, h in old.items() if new.get(p) != h]
        assert not changed, f"inputs changed or vanished under {root}: {changed}"
        appeared = [p for p in new if p not in old and not any(
            p == a or p.startswith(a.rstrip("/") + "/") for a in case.allowed_new)]
        assert not appeared, f"files appeared under {root}: {appeared}"
    return proc
