"""Mutation testing of one core module with mutmut, in bounded time.

    python tests/mutation/run.py MODULE [MODULE ...] [--max-minutes N] [--jobs J]

MODULE is a key of MODULES below (settings, decoding, image_io, image_io_all, base, image_cache, questions,
upload_limits, handlers, handler_methods) or its path (vqa/settings.py). For each module the script mutates
that file only, runs only the fast test files listed for it (seconds per mutant, never the tiny-model or
server tests), and prints the kill rate and the surviving mutants with their diffs. Mutants listed in
tests/mutation/equivalent.toml (they cannot change behaviour) are shown apart and left out of the rate.

Each module runs in its own folder, .mutmut/<module>/ (git-ignored), with a pyproject.toml whose
[tool.mutmut] section is the project's plus the module's file and tests, so runs of different modules
do not share caches. A run starts from scratch unless --resume is given. The whole invocation stops by
itself after --max-minutes: a module cut short reports what it had finished and how many mutants were
left unchecked. Exit status: 0 when every finished module reaches --target (default 85 %), 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutmut"
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")


@dataclass(frozen=True)
class Target:
    path: str
    tests: tuple[str, ...]
    #: function names to mutate (fnmatch patterns on the name; methods as "Class.method"); None: all of them
    functions: tuple[str, ...] | None = None


MODULES = {
    "settings": Target("vqa/settings.py", ("tests/test_settings_checks.py",)),
    "decoding": Target("vqa/backbones/decoding.py", ("tests/test_decoding_strategies_and_scores.py",
                                                     "tests/test_decoding.py::test_a_beam_that_finished_before_the_others_is_scored_over_its_own_tokens",
                                                     "tests/test_decoding.py::test_tokens_after_the_first_eos_do_not_count")),
    "image_io": Target("vqa/image_io.py", ("tests/test_image_io.py::test_clean_question", "tests/test_image_io.py::test_empty_questions",
                                           "tests/test_image_io.py::test_question_must_be_text",
                                           "tests/test_image_io.py::test_long_questions_are_rejected_not_truncated",
                                           "tests/test_image_io.py::test_arbitrary_text_only_raises_input_error",
                                           "tests/test_question_cleaning.py"),
                       functions=("clean_question", "_too_long")),
    "image_io_all": Target("vqa/image_io.py", ("tests/test_image_io.py", "tests/test_image_loading.py",
                                               "tests/test_question_cleaning.py")),
    "base": Target("vqa/backbones/base.py", ("tests/test_backbone_api.py",)),
    "image_cache": Target("vqa/backbones/image_cache.py", ("tests/test_image_cache.py",)),
    "questions": Target("vqa/data/questions.py", ("tests/test_question_wording_and_grounding.py", "tests/test_data.py",
                                                   "tests/test_data_oracle.py")),
    "upload_limits": Target("demo/upload_limits.py", ("tests/test_upload_rate_limit.py",)),
    "handlers": Target("demo/handlers.py", ("tests/test_answer_display.py", "tests/test_app_handlers.py::test_agreement_badge_both_ways",
                                            "tests/test_app_handlers.py::test_total_variation_between_two_different_distributions"),
                       functions=("label_value", "shown_answer", "percent", "megabytes", "same_answer", "agreement_badge",
                                  "_table_cell", "layer_choices", "head_choices", "_is_summary_token", "token_choices",
                                  "_choice", "check_view", "_token_index", "total_variation")),
    # The Ask / Caption / Attention handlers themselves (Handlers.ask, .caption, .explain, .redraw_attention) are
    # decorated with @user_errors, and mutmut 3 never mutates a decorated function: what they call is mutated here.
    "handler_methods": Target("demo/handlers.py", ("tests/test_handler_methods.py",),
                              functions=("Handlers._model", "user_errors", "head_notes", "domain_notice", "_position_words",
                                         "mark_peak", "colorbar_image", "display_copy", "attention_view", "grid_view")),
}

#: mutmut's exit codes per mutant (mutmut/stats.py) folded into what the kill rate needs.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
MISSED = {"survived", "no tests", "suspicious"}


@dataclass
class Outcome:
    module: str
    status: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut status
    diffs: dict[str, str] = field(default_factory=dict)  # surviving mutant -> its diff
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant name -> reason
    cut_short: bool = False

    def count(self, statuses) -> int:
        return sum(1 for name, s in self.status.items() if s in statuses and name not in self.equivalent)

    @property
    def rate(self) -> float | None:
        caught, missed = self.count(CAUGHT), self.count(MISSED)
        return caught / (caught + missed) if caught + missed else None


def mutmut_section(target: Target) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return dict(config, only_mutate=[target.path], pytest_add_cli_args_test_selection=list(target.tests))


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def prepare(name: str, target: Target, resume: bool) -> Path:
    """The module's own folder: links to the sources and tests, and a pyproject.toml for this module."""
    folder = WORK / name
    if folder.exists() and not resume:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for linked in ("vqa", "demo", "tests"):
        link = folder / linked
        if not link.exists():
            link.symlink_to(ROOT / linked)
    # The project's pyproject.toml (pytest's settings and markers) with this module's [tool.mutmut].
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    text += "\n[tool.mutmut]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in mutmut_section(target).items())
    (folder / "pyproject.toml").write_text(text)
    return folder


def mutant_patterns(target: Target) -> list[str]:
    """mutmut's names for the chosen functions' mutants: vqa.settings.x_check_decoding__mutmut_3,
    vqa.settings.xǁNumberSettingǁcheck__mutmut_1."""
    module = target.path.removesuffix(".py").replace("/", ".")
    if target.functions is None:
        return []
    patterns = []
    for function in target.functions:
        if "." in function:
            cls, method = function.split(".", 1)
            patterns.append(f"{module}.xǁ{cls}ǁ{method}__mutmut_*")
        else:
            patterns.append(f"{module}.x_{function}__mutmut_*")
    return patterns


def run_mutmut(folder: Path, target: Target, jobs: int, deadline: float, log) -> bool:
    """Run mutmut until it finishes or the deadline passes; True when it was cut short."""
    # One thread: PyTorch's OpenMP pool does not survive mutmut's fork (the children hang until the timeout and
    # every mutant reads as "timeout"), and a single thread leaves the machine's other core to its users.
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *mutant_patterns(target)]
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)  # mutmut saves what it has on Ctrl-C
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return True


def mutmut_cli(folder: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=folder, capture_output=True, text=True, timeout=120)
    return result.stdout


def equivalents(target: Target) -> list[dict]:
    if not EQUIVALENT_FILE.exists():
        return []
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    return [e for e in entries if e["module"] == target.path]


def changed_line(diff: str) -> str:
    """The mutated line(s) of a mutant's diff, stripped and joined: with the function, how equivalent.toml names a mutant."""
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " ".join(added)


def collect(name: str, folder: Path, target: Target) -> Outcome:
    outcome = Outcome(name)
    patterns = mutant_patterns(target)
    for line in mutmut_cli(folder, "results", "--all", "true").splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if mutant and (not patterns or any(fnmatch.fnmatchcase(mutant, p) for p in patterns)):
            outcome.status[mutant] = status
    known = equivalents(target)
    for mutant, status in outcome.status.items():
        if status in MISSED:
            diff = mutmut_cli(folder, "show", mutant).split("\n", 1)[-1].strip()
            outcome.diffs[mutant] = diff
            function = mutant.rsplit("__mutmut_", 1)[0].split(".")[-1].replace("xǁ", "").replace("ǁ", ".").removeprefix("x_")
            for entry in known:
                if entry["function"] == function and entry["mutated"].strip() == changed_line(diff):
                    outcome.equivalent[mutant] = entry["reason"]
    return outcome


def report(outcome: Outcome, target: Target) -> str:
    total = len(outcome.status)
    caught, missed = outcome.count(CAUGHT), outcome.count(MISSED)
    unchecked = sum(1 for s in outcome.status.values() if s not in CAUGHT | MISSED)
    rate = outcome.rate
    lines = [f"== {target.path}  (tests: {', '.join(target.tests)})",
             f"   mutants {total}: killed {caught}, survived {missed}, equivalent {len(outcome.equivalent)}, unchecked {unchecked}"
             + ("  [cut short by --max-minutes]" if outcome.cut_short else ""),
             f"   kill rate {rate:.1%} of non-equivalent checked mutants" if rate is not None else "   kill rate: nothing checked"]
    for mutant, diff in outcome.diffs.items():
        tag = f"EQUIVALENT ({outcome.equivalent[mutant]})" if mutant in outcome.equivalent else outcome.status[mutant].upper()
        lines += ["", f"-- {mutant}: {tag}", diff]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", help=f"one of {', '.join(MODULES)}, or its path")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop everything after this long (default 15)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1: leave a core free)")
    parser.add_argument("--resume", action="store_true", help="keep the module's earlier results and check only the rest")
    parser.add_argument("--tests", nargs="+", help="run these test files or node ids instead of the module's own "
                        "(e.g. to see what the older tests alone kill)")
    parser.add_argument("--target", type=float, default=0.85, help="kill rate each module should reach (default 0.85)")
    args = parser.parse_args(argv)

    by_path = {t.path: key for key, t in MODULES.items()}
    names = [by_path.get(m, m) for m in args.modules]
    unknown = [m for m in names if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown}; choose from {', '.join(MODULES)}")
    deadline = time.monotonic() + 60 * args.max_minutes
    ok = True
    for name in names:
        target = MODULES[name]
        if args.tests:
            target = Target(target.path, tuple(args.tests), target.functions)
        if time.monotonic() >= deadline - 5:
            print(f"== {target.path}: not started (--max-minutes reached)")
            ok = False
            continue
        folder = prepare(name, target, args.resume)
        print(f"mutating {target.path} (log: {folder / 'mutmut.log'})", flush=True)
        with open(folder / "mutmut.log", "w") as log:
            cut_short = run_mutmut(folder, target, args.jobs, deadline, log)
        outcome = collect(name, folder, target)
        outcome.cut_short = cut_short
        print(report(outcome, target), flush=True)
        if not outcome.status or all(s not in CAUGHT | MISSED for s in outcome.status.values()):
            # Typically the unmutated tests failed ("Failed to run clean test"): show why.
            tail = (folder / "mutmut.log").read_text(errors="replace")[-3000:]
            print(f"   mutmut checked nothing; the end of {folder / 'mutmut.log'}:\n{tail}")
        ok &= outcome.rate is not None and outcome.rate >= args.target and not cut_short
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
