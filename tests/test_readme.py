"""README.md runs as written: its ```bash and ```python blocks, in order, from a fresh folder.

Each bash line (a `\\`-continued line counts as one) and each python block is a step, run in one temp folder
in README order, so a file a step needs must be made by an earlier one. Python blocks run as their own
scripts (each must stand alone: its imports and names), except a block whose first line is `# file: NAME`,
which is written to NAME (a module a later command loads). What the test adds, and nothing else:
- `rnnedge train` / `rnnedge quickstart` lines without `--epochs` get `--epochs 1` (the README offers it:
  "every train line takes --epochs 1 for a quick try");
- `rnnedge`, `python` and `torchrun` are this interpreter's, and the folder has a link to the repository's
  `samples/` (the README's `python samples/...` lines run from a checkout);
- the set-up block (`pip install ...`, `pytest -q`) is not run: it is what runs this test.
The default run takes the main job's digits steps, `run` and the runtime snippets (FAST); the whole README
is `-m slow` (minutes: it trains every task for one epoch).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP = (re.compile(r"^pip install\b"), re.compile(r"^pytest\b"))
FILE_BLOCK = re.compile(r"^#\s*file:\s*(\S+)\s*$")
# the default run: the main job's digits steps, then running the file (CLI and runtime snippets)
FAST = (r"^rnnedge train --task digits --cell gru\b", r"^rnnedge export digits\.safetensors -o digits\.onnx$",
        r"batch\.npy", r"^rnnedge export digits\.safetensors -o digits-stream\.onnx --target stream",
        r"providers=\[\(\"CUDAExecutionProvider\"")
TIMEOUT = 3600  # seconds per step (the dates task's epoch took over 15 minutes on a 2-core machine shared by 7 jobs)


@dataclass
class Step:
    kind: str  # "bash", "python" or "file"
    text: str
    line: int  # where it starts in README.md
    name: str = ""  # the file a "file" step writes

    def __str__(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"README.md:{self.line} [{self.kind}] {first[:90]}"


def readme_steps(text: str) -> list[Step]:
    """The README's runnable steps, in order."""
    steps, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start, body = m.group(1), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if lang == "python":
            head = FILE_BLOCK.match(body[0]) if body else None
            steps.append(Step("file", "\n".join(body) + "\n", start + 1, head.group(1)) if head else
                         Step("python", "\n".join(body) + "\n", start + 1))
        elif lang == "bash":
            steps += _bash_steps(body, start + 1)
    return steps


def _bash_steps(body: list[str], first_line: int) -> list[Step]:
    steps, pending, at = [], "", first_line
    for k, line in enumerate(body):
        if not pending:
            at = first_line + k
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#") and not any(p.search(command) for p in SETUP):
            steps.append(Step("bash", command, at))
    return steps


def quick(command: str) -> str:
    """`--epochs 1` on training lines that do not say how many epochs (the README's own quick-try advice)."""
    words = command.split("#", 1)[0]
    if re.search(r"\brnnedge (train|quickstart)\b", words) and "--epochs" not in words:
        head, sep, comment = command.partition("  #")
        return head.rstrip() + " --epochs 1" + (f"  #{comment}" if sep else "")
    return command


def _tools(folder: Path) -> dict[str, str]:
    """An environment where `rnnedge`, `python` and `torchrun` are this interpreter's, importing this checkout."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    for name, args in (("rnnedge", "-m rnnedge.cli"), ("python", ""), ("torchrun", "-m torch.distributed.run")):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {args} "$@"\n')
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("RNNEDGE_DEBUG", None)
    return env


def run_steps(steps: list[Step], folder: Path) -> None:
    env = _tools(folder)
    (folder / "samples").symlink_to(ROOT / "samples", target_is_directory=True)
    for n, step in enumerate(steps):
        if step.kind == "file":
            (folder / step.name).write_text(step.text)
            continue
        if step.kind == "python":
            script = folder / f".readme_step_{n}.py"
            script.write_text(step.text)
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", quick(step.text)]
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"{step} exited {done.returncode}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-3000:]}")


def fast_steps(steps: list[Step]) -> list[Step]:
    picked = [s for s in steps if s.kind == "file" or any(re.search(p, s.text, re.M) for p in FAST)]
    missing = [p for p in FAST if not any(re.search(p, s.text, re.M) for s in picked)]
    assert not missing, f"README.md no longer has the steps the quick README test runs: {missing}"
    return picked


def test_readme_steps_are_found():
    """The parser sees the README's commands and snippets (and never the set-up lines)."""
    steps = readme_steps(README.read_text())
    commands = [s.text for s in steps if s.kind == "bash"]
    assert any(c.startswith("rnnedge train --task digits") for c in commands)
    assert not any(c.startswith(("pip install", "pytest")) for c in commands)
    assert sum(s.kind == "python" for s in steps) >= 4


def test_quick_adds_epochs_only_where_missing():
    assert quick("rnnedge train --task seed -o seed.safetensors") == "rnnedge train --task seed -o seed.safetensors --epochs 1"
    assert quick("rnnedge train --task dates -o d.safetensors  # 2 epochs") == \
        "rnnedge train --task dates -o d.safetensors --epochs 1  # 2 epochs"
    assert quick("rnnedge train --task digits --epochs 3 -o x") == "rnnedge train --task digits --epochs 3 -o x"
    assert quick("rnnedge export a -o b") == "rnnedge export a -o b"


def test_readme_quick_subset_runs(tmp_path):
    """The main job's digits steps, `rnnedge run` on a file made by an earlier line, and the runtime snippets."""
    run_steps(fast_steps(readme_steps(README.read_text())), tmp_path)


@pytest.mark.slow
def test_whole_readme_runs(tmp_path):
    """Every command and snippet of README.md, in order, from a fresh folder (every task trained one epoch)."""
    run_steps(readme_steps(README.read_text()), tmp_path)


@pytest.mark.slow
def test_apps_readme_runs(tmp_path):
    """samples/apps/README.md the same way: its training, export, input file and both apps."""
    run_steps(readme_steps((ROOT / "samples" / "apps" / "README.md").read_text()), tmp_path)
