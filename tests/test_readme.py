"""The README is true: its snippet runs as printed, the flags it names exist, and the top-level
table1.png is the results table it says it is."""
import re

from al2.paths import REPO_ROOT
from conftest import SCRIPTS, main, script

README = (REPO_ROOT / "README.md").read_text()


def test_the_snippet_runs_as_printed():
    section = README.split("## AL2 on your own network", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["reg"].schedule.epoch == 2                    # stepped once per epoch
    assert not scope["model"].avgpool._forward_hooks           # the with block removed the hook


def test_the_analysis_calls_run_as_printed():
    """The README's analyses for a network of one's own (its second Python block): after a
    plain `import al2`, al2.analyses.similarity, al2.analyses.ablation and al2.method.remedies
    are there and answer."""
    section = README.split("## AL2 on your own network", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert 0 < scope["similarity"]["pwcca_authors"] <= 1 + 1e-9
    assert len(scope["curves"]["test"]) == 11 and scope["loss"].item() > 0
    assert scope["features"].shape == (32, 256, 4, 4)


def test_the_top_level_table1_is_the_one_the_readme_names():
    named = re.search(r"!\[[^]]*\]\(table1\.png\)\s*\n\s*\n\*[^*]*\*\s*\(`(results/[\w-]+/table1"
                      r"\.png)`, copied\)", README)
    assert named, "the README names the results table that table1.png copies"
    assert (REPO_ROOT / "table1.png").read_bytes() == (REPO_ROOT / named.group(1)).read_bytes()


def test_every_flag_the_readme_names_exists():
    bench = SCRIPTS.setdefault("bench_train", script("code/bench/bench_train.py"))
    helps = main("train", "--help").stdout + main("evaluate", "--help").stdout + \
        bench.build_parser().format_help() + \
        (REPO_ROOT / "scripts" / "gpu_job" / "run.sh").read_text()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", README))
    assert flags and not {f for f in flags if f not in helps}
