"""What a lab checks before adopting the package: a licence, a changelog, a citation, one version number."""
import os
import re

import yaml

import learngene_ea
from conftest import ROOT

VERSION_FILES = {"learngene_ea/__init__.py", "CITATION.cff", "CHANGELOG.md"}  # the only files that name it
SKIPPED_FOLDERS = {".git", "runs", "__pycache__", ".venv", ".ci-venv", "build", "dist", ".pytest_cache"}


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_the_licence_is_mit_with_the_contributors_copyright():
    text = read("LICENSE")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 learngene-ea contributors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_citation_names_this_version_and_prefers_the_gtl_paper():
    cff = yaml.safe_load(read("CITATION.cff"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == learngene_ea.__version__
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Transferring Core Knowledge via Learngenes"
    assert [a["family-names"] for a in paper["authors"]] == ["Feng", "Wang", "Geng"]
    assert paper["year"] == 2024


def test_the_changelog_has_a_section_for_this_version_and_the_one_before():
    headings = re.findall(r"^## \[([^\]]+)\]", read("CHANGELOG.md"), re.M)
    assert headings[:2] == [learngene_ea.__version__, "0.1.0"]


def test_the_version_number_is_written_in_one_place_and_named_only_by_citation_and_changelog():
    pattern = re.compile(r"(?<![\d.])" + re.escape(learngene_ea.__version__) + r"(?![\d.])")
    naming = set()
    for folder, folders, files in os.walk(ROOT):
        folders[:] = [f for f in folders if f not in SKIPPED_FOLDERS and not f.endswith(".egg-info")]
        for name in files:
            if name.endswith((".py", ".md", ".cff", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".json")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    if pattern.search(f.read()):
                        naming.add(os.path.relpath(path, ROOT).replace(os.sep, "/"))
    assert naming == VERSION_FILES
