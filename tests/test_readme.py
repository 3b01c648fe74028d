"""The front page stays a front page, and says what the committed results say: its headline
is the comparison report rendered by ``compare.headline``, its run times are the committed
``default`` run's, and every link on it and on the reports' pages leads somewhere."""
import json
import re
from pathlib import Path

import pytest

from fatsmb_lib.course.pipeline import notebook_sequence
from fatsmb_lib.studies.compare import committed_cost, headline

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "reports" / "README.md", ROOT / "reports" / "bench" / "README.md"]


def duration(seconds: float) -> str:
    """How the README writes a run time: seconds under a minute, else minutes."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def test_the_readme_reads_in_two_minutes():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move detail to reports/README.md"
    assert "make run" in README.read_text() and "make test" in README.read_text()


def test_the_headline_is_the_committed_comparison():
    folder = ROOT / "reports" / "ml100k"
    report = json.loads((folder / "comparison.json").read_text())
    assert headline(report, cost=committed_cost(folder, report)) in README.read_text(), (
        "README's headline differs from reports/ml100k/comparison.json: paste the output of "
        "`python -m fatsmb_lib.studies.compare --headline`")


def test_the_claims_counts_are_the_committed_ledger():
    ledger = (ROOT / "reports" / "claims.md").read_text()
    counts = next(line for line in ledger.splitlines() if line.startswith("holds: "))
    assert counts in " ".join(README.read_text().split()), (
        "README's counts of the paper's claims differ from reports/claims.md: rerun "
        "`python -m fatsmb_lib.studies.claims` and copy its counts line")


def test_the_headline_words_follow_the_tie_rule():
    def metrics(mean, std):
        return {key: [mean, std] for key in ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20")}

    test = {"Pop": metrics(0.01, 0.0), "SASRec": metrics(0.07, 0.002),
            "BERT4Rec": metrics(0.058, 0.004), "MBAE barope": metrics(0.061, 0.002),
            "FatsMB mcgln x0": metrics(0.060, 0.003)}
    report = {"profile": {"name": "full", "denoiser": "mcgln", "prediction": "x0",
                          "position": "barope"},
              "seeds": [0, 1, 2], "mean_std": {"test": test, "valid": test}}
    text = headline(report)
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[-1] for line in text.splitlines()[2:7]}
    assert rows == {"Pop": "ahead |", "SASRec": "behind |", "BERT4Rec": "tied |",
                    "MBAE barope": "tied |", "FatsMB mcgln x0": "— |"}
    assert "the best baseline here, SASRec (0.0700 ± 0.0020): FatsMB is **behind** it (-14.3% NDCG@10)" in text
    assert "BERT4Rec (0.0580 ± 0.0040): FatsMB is **tied with** it (+3.4% NDCG@10)" in text


def test_run_times_are_the_committed_runs():
    text = README.read_text()
    default = json.loads((ROOT / "reports/ml100k/default/run_summary-from-scratch.json").read_text())
    for notebook in notebook_sequence():
        row = next(line for line in text.splitlines() if f"(notebooks/{notebook.name})" in line)
        assert row.endswith(f"| {duration(default['seconds'][notebook.stem])} |"), row
    full = json.loads((ROOT / "reports/ml100k/full/run_summary-from-scratch.json").read_text())
    for profile, summary in (("default", default), ("full", full)):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{profile}` |"))
        assert row.endswith(f"| {duration(summary['total_seconds'])} on 2 cores |"), row


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target} leads nowhere"
        if fragment and resolved.suffix == ".md":
            anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", resolved.read_text(), re.M)}
            assert fragment in anchors, f"{page.name}: no heading #{fragment} in {path}"
