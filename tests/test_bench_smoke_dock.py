"""The dock-speed benchmark's instrument keeps working: exporting a tree from git, counting a vault
folder, timing a child through the launcher, reading an ingest's JSON, and the before/after table.
No Prefect, no servers, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.dock_speed import (
    ChildRun,
    FolderUsage,
    Row,
    Target,
    export_tree,
    folder_usage,
    ingest_document,
    outcome_counts,
    render_markdown,
    render_table,
    run_child,
    summary_rows,
)
from bench.servers import BenchmarkError


def git(repo: Path, *arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_tree_is_exported_at_its_commit_without_git_metadata(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "cli").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "cli" / "__main__.py").write_text("print('old')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "old")
    old = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "cli" / "__main__.py").write_text("print('new')\n")
    (repo / "added.txt").write_text("later\n")
    git(repo, "commit", "-q", "-am", "new")

    tree = export_tree(repo, old, tmp_path / "before")

    assert (tree / "cli" / "__main__.py").read_text() == "print('old')\n"
    assert not (tree / "added.txt").exists()
    assert not (tree / ".git").exists()
    with pytest.raises(BenchmarkError, match="git archive"):
        export_tree(repo, "no-such-rev", tmp_path / "missing")


def test_the_vault_counter_sees_every_byte_written(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    (vault / "objects" / "ab").mkdir(parents=True)
    (vault / "objects" / "ab" / "one").write_bytes(b"x" * 100)
    before = folder_usage(vault)
    (vault / "items" / "id").mkdir(parents=True)
    (vault / "items" / "id" / "manifest.json").write_bytes(b"y" * 7)

    assert before == FolderUsage(100, 1)
    assert folder_usage(vault) - before == FolderUsage(7, 1)
    assert folder_usage(tmp_path / "absent") == FolderUsage(0, 0)


def test_a_child_is_timed_and_its_own_peak_memory_measured(tmp_path: Path) -> None:
    grow = "import sys; block = bytearray(96 * 1024 * 1024); print('done'); sys.exit(3)"

    run = run_child([sys.executable, "-c", grow], env={}, cwd=tmp_path, scratch=tmp_path / "s", timeout=60)

    assert run.returncode == 3 and run.stdout == "done\n"
    assert run.seconds > 0
    assert 96 * 1024 <= run.peak_rss_kib < 160 * 1024
    assert not list((tmp_path / "s").iterdir()), "the launcher's files are removed"


def test_an_ingest_report_is_read_from_the_commands_output() -> None:
    def printed(stdout: str) -> ChildRun:
        return ChildRun(0.1, 1, 0.1, 0, stdout, "", None)

    document = 'a log line\n{"ingested": [{}], "duplicates": [{}, {}], "rejected": []}\n'
    assert outcome_counts(ingest_document(printed(document))) == {
        "ingested": 1,
        "duplicates": 2,
        "rejected": 0,
    }
    with pytest.raises(BenchmarkError, match="no JSON"):
        ingest_document(printed("Traceback (most recent call last)"))


def test_the_table_judges_the_after_column_against_the_target() -> None:
    figures = {
        "redock_written_bytes": {"before": 4096.0, "after": 0.0},
        "tiny_files_per_s": {"before": 31.5, "after": 99.9},
        "start_empty_seconds": {"before": 4.0, "after": None},
        "large_peak_rss_growth_mib": {"before": -0.4, "after": 40.2},
    }

    rows = summary_rows(figures)

    assert [row.name for row in rows] == [
        "re-dock: bytes written to the vault",
        "tiny files: files/s",
        "dock start, empty device (median)",
        "large file: peak RSS growth",
    ]
    assert [row.met for row in rows] == [True, False, None, False]
    table = render_table(rows)
    assert table[0] == "| row | target | before | after | met? |"
    assert table[2] == "| re-dock: bytes written to the vault | 0 | 4,096 B | 0 B | yes |"
    assert table[3] == "| tiny files: files/s | >= 100 | 31.5 | 99.9 | NO |"
    assert table[4] == "| dock start, empty device (median) | - | 4.00 s | - | - |"
    assert table[5] == "| large file: peak RSS growth | <= 32 MiB | 0 MiB | 40 MiB | NO |"
    assert Row.from_json(rows[1].to_json()) == rows[1]
    assert Target("< 2 s", "<", 2).met(2.0) is False


def test_the_markdown_names_the_trees_the_machine_and_the_command() -> None:
    report = {
        "date": "2026-12-06T21:00:00+00:00",
        "command": "python -m bench.dock_speed --photos 5",
        "machine": {
            "nproc": 2,
            "cpu": "a CPU",
            "memory_gib": 24,
            "python": "3.11",
            "platform": "Linux",
            "packages": {"prefect": "3"},
        },
        "prefect": "a server",
        "restic_version": None,
        "trees": {"before": "`git archive 96e089d`", "after": "/work/x at abc123"},
        "sizes": {"photos": 5},
        "samples": {"photos_local": [{"others_cores": 0.1}, {"others_cores": 0.5}, {"others_cores": None}]},
        "rows": [row.to_json() for row in summary_rows({"tiny_files_per_s": {"before": 1.0, "after": 2.0}})],
    }

    markdown = render_markdown(report)

    assert "`python -m bench.dock_speed --photos 5`" in markdown
    assert "Before: `git archive 96e089d`. After: /work/x at abc123." in markdown
    assert "| tiny files: files/s | >= 100 | 1.0 | 2.0 | NO |" in markdown
    assert "Page cache" in markdown
    assert "median 0.30, highest 0.50, over 2 samples" in markdown
