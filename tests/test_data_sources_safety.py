"""Names read from archives and file lists are never trusted as paths (modify_ms/data/sources.py).

Every image entry carries a clean relative output name (``rel_names``); zip members whose
names are absolute, climb out with '..', repeat an earlier member or declare an oversized
payload are skipped with the reason; file-list entries may point anywhere (they are only
read) but their output names are plain base names. Also the output-folder checks that
tools/align_faces.py relies on (utils.paths.check_output_dir with input_files).
"""
import io
import os
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from modify_ms.data import sources
from modify_ms.data.imageio import ImageReadError
from modify_ms.data.sources import DataSourceError, open_source
from modify_ms.utils.paths import OutputPathError, check_output_dir


def _png(value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are made on purpose
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return str(path)


def test_unsafe_zip_members_are_skipped_with_their_reason(tmp_path):
    archive = _zip(tmp_path / "set.zip", [
        ("/abs/evil.png", _png()), ("../up.png", _png()), ("a/../../b.png", _png()), ("..\\win.png", _png()),
        ("C:\\drive.png", _png()), ("D:/drive2.png", _png()), ("../notes.txt", b"x"),
        ("ok.png", _png(1)), ("ok.png", _png(2)), ("./dot.png", _png()), ("sub\\back.png", _png()),
        ("__MACOSX/._ok.png", b"junk"), ("deep/.hidden.png", _png()), ("readme.txt", b"x"),
    ])
    source = open_source(archive)
    assert source.names == ["./dot.png", "ok.png", "sub\\back.png"]
    assert source.rel_names == ["dot.png", "ok.png", "sub/back.png"]
    reasons = dict(source.skipped)
    assert set(reasons) == {"/abs/evil.png", "../up.png", "a/../../b.png", "..\\win.png", "C:\\drive.png",
                            "D:/drive2.png", "../notes.txt", "ok.png"}
    for name in ("/abs/evil.png", "C:\\drive.png", "D:/drive2.png"):
        assert reasons[name] == "unsafe member name: absolute path in the archive"
    for name in ("../up.png", "a/../../b.png", "..\\win.png", "../notes.txt"):
        assert reasons[name] == "unsafe member name: path climbs out of the archive ('..')"
    assert reasons["ok.png"].startswith("duplicate member name")
    assert source.ignored == 1  # readme.txt; archiver junk and hidden files are not counted
    kept = source.subset([2])
    assert kept.rel_names == ["sub/back.png"] and kept.read(0).shape == (20, 20, 3)


def test_oversized_and_damaged_members(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "set.zip", [("big.png", _png() + b"\0" * 5000), ("small.png", _png())],
                   compression=zipfile.ZIP_DEFLATED)
    monkeypatch.setattr(sources, "MAX_MEMBER_BYTES", 4096)
    source = open_source(archive)
    assert source.names == ["small.png"]
    assert source.skipped[0][0] == "big.png" and "above the 0 MB limit" in source.skipped[0][1]

    raw = bytearray(open(archive, "rb").read())
    start = raw.index(b"small.png") + len("small.png")
    raw[start + 10:start + 40] = b"\x5a" * 30  # the member's deflated bytes
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match="cannot read from the archive"):
        open_source(str(damaged)).read(0)


def test_file_list_entries_may_point_anywhere_but_output_names_stay_plain(tmp_path):
    elsewhere = tmp_path / "far" / "away"
    elsewhere.mkdir(parents=True)
    (elsewhere / "x.png").write_bytes(_png())
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "y.png").write_bytes(_png())
    listing = tmp_path / "lists" / "list.txt"
    listing.write_text("\n".join([str(elsewhere / "x.png"), "../far/away/x.png", "y.png", "../far",
                                  "missing.png", "# comment", "  ", "bad\x00name.png"]) + "\n")
    source = open_source(str(listing))
    assert source.names == [str(elsewhere / "x.png"), str(tmp_path / "lists" / "../far/away/x.png"),
                            str(tmp_path / "lists" / "y.png")]
    assert source.rel_names == ["x.png", "x.png", "y.png"]  # base names: the tool makes them unique
    reasons = [reason for _, reason in source.skipped]
    assert [r.split(" (listed at")[0] for r in reasons] == ["is a folder, not an image file", "file not found",
                                                            "name contains a NUL byte"]
    assert all(f"{listing}:" in r for r in reasons)
    assert "\x00" not in "".join(name for name, _ in source.skipped)


def test_file_list_that_is_not_text_is_one_error(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"a.png\n\xff\xfe\x00\x00binary")
    with pytest.raises(DataSourceError, match=r"list.txt: not a UTF-8 text file list"):
        open_source(str(listing))


def test_folder_names_are_relative_posix(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "a.png").write_bytes(_png())
    (tmp_path / "in" / "b.png").write_bytes(_png())
    source = open_source(str(tmp_path / "in"))
    assert source.rel_names == ["b.png", "sub/a.png"]
    assert open_source("builtin:photos", 16).rel_names[:2] == ["photos_0000", "photos_0001"]


def test_output_folder_checks(tmp_path):
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "a.png"
    photo.write_bytes(_png())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_dir(str(tmp_path / "file" / "out"))
    with pytest.raises(OutputPathError, match="holds input files.*--allow-output-in-input"):
        check_output_dir(str(tmp_path / "in"), input_files=[str(photo)])
    with pytest.raises(OutputPathError, match="holds input files"):
        check_output_dir(str(tmp_path / "in") + "/.", input_files=[os.path.relpath(photo)])
    assert check_output_dir(str(tmp_path / "in"), input_files=[str(photo)], allow_inside=True)
    assert check_output_dir(str(tmp_path / "in" / "aligned"), input_files=[str(photo)])  # beside, not inside
