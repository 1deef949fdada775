"""What every generated image folder (bench.make_glyph_folder, bench.make_texture_folder) promises:
the same arguments write the same files, and a folder that already holds files is never written into."""
import hashlib
import os

import pytest

from bench import make_glyph_folder, make_texture_folder

WRITERS = [(make_glyph_folder.make_glyph_folder, make_glyph_folder.main),
           (make_texture_folder.make_texture_folder, make_texture_folder.main)]


def digest(folder):
    h = hashlib.sha1()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(open(os.path.join(root, name), "rb").read())
    return h.hexdigest()


@pytest.mark.parametrize("write, _", WRITERS)
def test_the_same_arguments_write_the_same_files(tmp_path, write, _):
    write(str(tmp_path / "a"), classes=3, per_class=2, size=16, seed=4)
    write(str(tmp_path / "b"), classes=3, per_class=2, size=16, seed=4)
    write(str(tmp_path / "c"), classes=3, per_class=2, size=16, seed=5)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


@pytest.mark.parametrize("_, main", WRITERS)
def test_a_folder_that_holds_files_or_a_bad_size_is_refused_with_exit_2(tmp_path, capsys, _, main):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    assert main(["--out", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "x" / "mine.txt").read_text() == "keep"
    assert main(["--out", str(tmp_path / "y"), "--classes", "1"]) == 2 and not (tmp_path / "y").exists()
