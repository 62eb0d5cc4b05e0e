"""Plant six plausible bugs, one at a time, in a throw-away git worktree of HEAD, and run the tests that
should notice each one. Every bug must make at least one test fail.

    .venv/bin/python tests/mutation/planted_bugs.py                  # all six, about 10 minutes on 2 cores
    .venv/bin/python tests/mutation/planted_bugs.py nucleus_is_greedy

These are the bugs an outside review planted when four of six went unnoticed by the whole suite; the
table in tests/README.md ("Planted bugs") lists which tests catch each one now.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Bug:
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = {
    "ask_ignores_decoding": Bug(
        "demo/handlers.py",
        "answers = model.ask(image, question, top_k=top_k, decoding=decoding,",
        'answers = model.ask(image, question, top_k=top_k, decoding="greedy",',
        ("tests/test_decoding.py", "tests/test_handler_methods.py", "tests/test_app_handlers.py")),
    "negation_not_negated": Bug(
        "vqa/data/questions.py",
        'answer = ("no" if exists else "yes") if negated else ("yes" if exists else "no")',
        'answer = "yes" if exists else "no"',
        ("tests/test_data.py", "tests/test_data_oracle.py")),
    "processor_mirrors": Bug(
        "vqa/model/processing.py",
        '        return self.image_processor(resized, return_tensors="pt")["pixel_values"]',
        "        from PIL import ImageOps\n        resized = [ImageOps.mirror(im) for im in resized]\n"
        '        return self.image_processor(resized, return_tensors="pt")["pixel_values"]',
        ("tests/test_embedded_api.py",)),
    "nucleus_is_greedy": Bug(
        "vqa/backbones/decoding.py",
        "    return dict(common, do_sample=True, top_p=top_p, top_k=0, temperature=max(temperature, 1e-4),\n"
        "                num_return_sequences=num_return)",
        "    return dict(common, do_sample=False, num_beams=1)",
        ("tests/test_decoding_strategies_and_scores.py",)),
    "drift_without_abs": Bug(
        "demo/handlers.py",
        "return 0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))",
        "return 0.5 * sum((p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))",
        ("tests/test_answer_display.py", "tests/test_app_handlers.py")),
    "switch_keeps_old_model": Bug(
        "demo/handlers.py",
        "return status, self.model_facts(key), self.header(key), key",
        "return status, self.model_facts(key), self.header(key), model_key",
        ("tests/test_app_handlers.py", "tests/test_public_space.py")),
}


def run_planted(name: str, bug: Bug, worktree: Path) -> list[str]:
    """The failing tests' ids with `bug` planted; the file is restored whatever happens."""
    target = worktree / bug.path
    original = target.read_text()
    if original.count(bug.old) != 1:
        raise SystemExit(f"{name}: the code to change is no longer in {bug.path} exactly once; update BUGS")
    target.write_text(original.replace(bug.old, bug.new))
    try:
        env = {**os.environ, "PYTHONPATH": str(worktree), "HF_HUB_OFFLINE": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *bug.tests],
                                cwd=worktree, capture_output=True, text=True, env=env)
        return [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED ")]
    finally:
        target.write_text(original)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bugs", nargs="*", help=f"bugs to plant (default: all): {', '.join(BUGS)}")
    args = parser.parse_args()
    unknown = [name for name in args.bugs if name not in BUGS]
    if unknown:
        parser.error(f"unknown bug(s): {', '.join(unknown)}; choose from {', '.join(BUGS)}")
    unnoticed = []
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "planted"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), "HEAD"], cwd=ROOT, check=True, capture_output=True)
        try:
            for name in args.bugs or BUGS:
                failed = run_planted(name, BUGS[name], worktree)
                print(f"{name}: {len(failed)} failing test(s)" + "".join(f"\n    {test}" for test in failed), flush=True)
                if not failed:
                    unnoticed.append(name)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    if unnoticed:
        print("NOT NOTICED:", ", ".join(unnoticed))
    return 1 if unnoticed else 0


if __name__ == "__main__":
    sys.exit(main())
