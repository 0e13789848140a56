"""The root README's benchmark summary is derived from the crates' READMEs: every number of its "median (min-max)"
column must appear in the README its row links to, in its section "Figures: every run of the shipped ..." (the
whole README where it has none), so the summary cannot drift from the runs it summarises."""

import re
from pathlib import Path
from typing import Dict, List, Set

from manifest_helpers import REPO

SUMMARY_HEADER = "| what | target | runs of the shipped code (load average) | median (min-max) | met |"
FIGURE_COLUMN = 3

# A number not glued to a letter or a dot before it ("p99" is a name, not 99); thousands separators allowed.
NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:,\d{3})*(?:\.\d+)?")
# Numbers anywhere in a README (looser: "p99=250.0ms" still yields 250.0).
ANY_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def numbers(text: str, pattern: re.Pattern = NUMBER) -> Set[float]:
    return {float(m.replace(",", "")) for m in pattern.findall(text)}


SHIPPED_SECTION = "### Figures: every run of the shipped"


def shipped_section(text: str) -> str:
    """The README's section of every run of the shipped code, or the whole README if it has none."""
    if SHIPPED_SECTION not in text:
        return text
    return text.split(SHIPPED_SECTION, 1)[1].split("\n### ", 1)[0]


def summary_rows(readme: str) -> List[List[str]]:
    """The cells of each row of the summary table in the Benchmarks section."""
    section = readme.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index(SUMMARY_HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def missing_figures(readme: str, read: Dict[str, str]) -> List[str]:
    """Each summary figure absent from the README its row links to, as 'file: number'."""
    problems = []
    for cells in summary_rows(readme):
        link = LINK.search(cells[0])
        if link is None:
            problems.append(f"row without a link to its README: {cells[0]}")
            continue
        source = link.group(1)
        if source not in read:
            problems.append(f"{source}: linked README not found")
            continue
        have = numbers(shipped_section(read[source]), ANY_NUMBER)
        for n in sorted(numbers(cells[FIGURE_COLUMN])):
            if n not in have:
                problems.append(f"{source}: {n:g}")
    return problems


def test_every_summary_figure_appears_in_the_readme_of_its_row():
    readme = (REPO / "README.md").read_text()
    rows = summary_rows(readme)
    assert len(rows) >= 10, "the summary table was not found whole"
    read = {}
    for cells in rows:
        link = LINK.search(cells[0])
        if link and (REPO / link.group(1)).is_file():
            read[link.group(1)] = (REPO / link.group(1)).read_text()
    assert {"cts-exporter/README.md", "neo4j-sink/README.md", "chaos-sink/README.md",
            "chaos-sink/control/README.md"} <= set(read)
    assert missing_figures(readme, read) == []


def test_the_check_finds_a_figure_the_crate_readme_does_not_have():
    readme = (
        "# x\n\n## Benchmarks\n\n" + SUMMARY_HEADER + "\n|---|---|---|---|---|\n"
        "| [a](a/README.md#figures): p99 | < 100 ms | 3 (1.0-2.0) | 2,441 ev/s (1,648-3,883), p99 99.3 ms | met |\n"
        "| no link | - | 1 | 5 | - |\n"
        "\n## Next\n"
    )
    crate = "| # | events/s | p99 ms |\n| 1 | 2441 | 99.33 |\n| 2 | 1,648 | 58 |\n"
    problems = missing_figures(readme, {"a/README.md": crate})
    # 3883 and 99.3 are not in the crate's README (99.33 is another number); "p99" is a name, not 99.
    assert problems == ["a/README.md: 99.3", "a/README.md: 3883", "row without a link to its README: no link"]
    fixed = readme.replace("| no link | - | 1 | 5 | - |\n", "")
    assert missing_figures(fixed, {"a/README.md": crate + "3,883 99.3\n"}) == []
    # Only the shipped-code section counts once a README has one: the same figure among older runs is not enough.
    sectioned = "### Figures: every run of the shipped code\n" + crate + "\n### Older runs\n3,883 99.3\n"
    assert missing_figures(fixed, {"a/README.md": sectioned}) == ["a/README.md: 99.3", "a/README.md: 3883"]
