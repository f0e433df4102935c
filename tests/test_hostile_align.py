"""tools/align_faces.py on hostile and broken inputs, through the real command line.

Each row lays out files in a scratch folder (also the tool's current directory) and runs
the tool in a subprocess; tests/cli_harness.check_case asserts the exit code, a single
'error:' line without a traceback for refusals, that no file that existed changed, and
that nothing appeared except the outputs the row allows. Rows that succeed partially
also check what the summary and OUT/align_skipped.tsv say. Classes (issue 9, class 2):
archive member names (absolute, '..', backslashes, duplicates, links out of OUT),
output folders (equal to / inside / beside the inputs, a file, under a file), missing
or unusable inputs, name collisions, damaged images, output formats, bad options.

The face photo is the real astronaut (skimage) at 256 px, aligned to 32 px, one worker.
Rows about names and paths run with --mode none (centre crops): dlib's model load costs
about 2 s a run; the rows about damaged images and archive names use dlib.
"""
import dataclasses
import io
import os
import zipfile
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
from PIL import Image

from cli_harness import Case, check_case, run_tool, tree
from modify_ms.data.align import dlib_available

pytestmark = pytest.mark.skipif(not dlib_available(), reason="alignment extra not installed (pip install .[align])")

TOOL = "tools/align_faces.py"
DLIB = ["--size", "32", "--workers", "1", "--quiet", "--mode", "dlib"]
# Rows about names and paths do not need faces found: centre crops skip dlib's 2 s model load.
FAST = ["--size", "32", "--workers", "1", "--quiet", "--mode", "none"]
REPORT = "align_skipped.tsv"


@dataclasses.dataclass
class AlignCase(Case):
    outputs: Sequence[str] = ()  # exactly the files the run may create (relative to the scratch folder)
    check: Optional[Callable] = None  # (proc, tmp) -> None: what the summary / report / outputs say

    def __post_init__(self):
        # the harness allows a path and everything under it: give it the outputs and their
        # folders, and check the exact set of new files here (test_hostile_input)
        folders = {"/".join(o.split("/")[:k]) for o in self.outputs for k in range(1, o.count("/") + 1)}
        self.allowed_new = sorted(set(self.outputs) | folders)

    def __str__(self):
        return self.name


# ----------------------------------------------------------------------------- inputs

_FACE = {}


def face_bytes(fmt: str = "JPEG") -> bytes:
    """The astronaut photo at 256 px (her face is about 45 px: found at dlib's first pass)."""
    if fmt not in _FACE:
        from modify_ms.data.builtin import astronaut_photo

        buf = io.BytesIO()
        Image.fromarray(astronaut_photo()).resize((256, 256), Image.BILINEAR).save(buf, format=fmt)
        _FACE[fmt] = buf.getvalue()
    return _FACE[fmt]


def put(tmp: str, rel: str, data: bytes) -> str:
    path = os.path.join(tmp, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def put_zip(tmp: str, rel: str, members) -> str:
    """members: (name, bytes) written under exactly that name (zipfile keeps '/', '..', '\\')."""
    path = os.path.join(tmp, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def face_folder(tmp: str, *names: str) -> str:
    for name in names or ("a.jpg",):
        put(tmp, os.path.join("in", name), face_bytes("PNG" if name.endswith(".png") else "JPEG"))
    return "in"


def truncated_jpeg() -> bytes:
    data = face_bytes()
    return data[: len(data) // 3]


def report_rows(tmp: str, out: str = "out"):
    with open(os.path.join(tmp, out, REPORT), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "input\treason"
    return [tuple(line.split("\t")) for line in lines[1:]]


def expect_skipped(*pairs, out: str = "out"):
    """A check: the report (and the printed summary) list exactly these (name part, reason part)."""
    def check(proc, tmp):
        rows = report_rows(tmp, out)
        assert len(rows) == len(pairs), rows
        for name_part, reason_part in pairs:
            assert any(name_part in name and reason_part in reason for name, reason in rows), (name_part, rows)
            assert any(name_part in line and reason_part in line for line in proc.stdout.splitlines()
                       if line.lstrip().startswith("skipped ")), proc.stdout
    return check


def all_of(*checks):
    def check(proc, tmp):
        for c in checks:
            c(proc, tmp)
    return check


def stdout_has(*fragments):
    def check(proc, tmp):
        for fragment in fragments:
            assert fragment in proc.stdout, f"{fragment!r} not in\n{proc.stdout}"
    return check


def image_format(rel: str, fmt: str, size: int = 32):
    def check(proc, tmp):
        with Image.open(os.path.join(tmp, rel)) as img:
            assert img.format == fmt and img.size == (size, size)
    return check


# ----------------------------------------------------------------------------- rows

def _zip_absolute(tmp):
    victim = os.path.join(tmp, "victim", "evil.jpg")  # an absolute name pointing at a folder we watch
    os.makedirs(os.path.dirname(victim))
    absent = os.path.join(tmp, "victim2", "deeper", "evil2.jpg")  # its folders must not be created either
    put_zip(tmp, "photos.zip", [(victim, face_bytes()), (absent, face_bytes()), ("good.jpg", face_bytes())])
    return [TOOL, "photos.zip", "out"] + DLIB


def _zip_dotdot(tmp):
    put_zip(tmp, "photos.zip", [("../evil.jpg", face_bytes()), ("a/../../evil2.jpg", face_bytes()),
                                ("sub/../../../evil3.jpg", face_bytes()), ("../notes.txt", b"x")])
    return [TOOL, "photos.zip", "out"] + DLIB


def _zip_dotdot_and_good(tmp):
    put_zip(tmp, "photos.zip", [("../evil.jpg", face_bytes()), ("ok/good.jpg", face_bytes())])
    return [TOOL, "photos.zip", "out"] + FAST


def _zip_backslash(tmp):
    put_zip(tmp, "photos.zip", [("..\\evil.jpg", face_bytes()), ("C:\\evil2.jpg", face_bytes()),
                                ("sub\\face.jpg", face_bytes())])
    return [TOOL, "photos.zip", "out"] + FAST


def _zip_duplicates(tmp):
    with zipfile.ZipFile(os.path.join(tmp, "photos.zip"), "w") as zf:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we make on purpose
            for name in ("a.jpg", "a.jpg", "./a.jpg"):
                zf.writestr(name, face_bytes())
    return [TOOL, "photos.zip", "out"] + FAST


def _zip_symlink_in_out(tmp):
    os.makedirs(os.path.join(tmp, "victim"))
    os.makedirs(os.path.join(tmp, "out"))
    os.symlink(os.path.join(tmp, "victim"), os.path.join(tmp, "out", "sub"))
    put_zip(tmp, "photos.zip", [("sub/evil.jpg", face_bytes()), ("good.jpg", face_bytes())])
    return [TOOL, "photos.zip", "out"] + FAST


def _zip_damaged_member(tmp):
    path = os.path.join(tmp, "photos.zip")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("broken.png", face_bytes("PNG") + b"\0" * 4096)
        zf.writestr("good.jpg", face_bytes())
        zf.writestr("text.jpg", b"just some text, not a jpeg" * 4)
    raw = bytearray(open(path, "rb").read())
    start = raw.index(b"broken.png") + len("broken.png")  # the member's deflated data follows its name
    raw[start + 200:start + 260] = b"\xa5" * 60
    with open(path, "wb") as fh:
        fh.write(bytes(raw))
    return [TOOL, "photos.zip", "out"] + FAST


def _not_a_zip(tmp):
    put(tmp, "photos.zip", b"PK\x03\x04 this is not really a zip archive")
    return [TOOL, "photos.zip", "out"] + FAST


def _zip_beside_out(tmp):
    put_zip(tmp, "data/photos.zip", [("a.jpg", face_bytes())])
    put(tmp, "data/a.png", b"the user's own file")
    return [TOOL, "data/photos.zip", "data", "--overwrite"] + FAST


def _dir_dir(tmp, *extra):
    face_folder(tmp, "a.jpg", "b.png")
    return [TOOL, "in", "in"] + list(extra) + FAST


def _dir_dir_dot(tmp):
    face_folder(tmp, "a.jpg")
    return [TOOL, ".", "."] + FAST


def _out_inside_in(tmp, *extra):
    face_folder(tmp, "a.jpg")
    return [TOOL, "in", "in/aligned"] + list(extra) + FAST


def _out_inside_in_via_link(tmp):
    face_folder(tmp, "a.jpg")
    os.symlink(os.path.join(tmp, "in"), os.path.join(tmp, "link"))
    return [TOOL, "in", "link/aligned"] + FAST


def _dir_dir_allowed(tmp):
    face_folder(tmp, "a.png", "b.jpg")  # a.png's output would be a.png itself: never written
    return [TOOL, "in", "in", "--allow-output-in-input", "--overwrite"] + FAST


def _out_is_file(tmp):
    face_folder(tmp)
    put(tmp, "out", b"a file, not a folder")
    return [TOOL, "in", "out"] + FAST


def _out_under_file(tmp):
    face_folder(tmp)
    put(tmp, "notes.txt", b"a file")
    return [TOOL, "in", "notes.txt/out"] + FAST


def _in_missing(tmp):
    return [TOOL, "nowhere", "out"] + FAST


def _in_unsupported(tmp):
    put(tmp, "readme.md", b"# not an input")
    return [TOOL, "readme.md", "out"] + FAST


def _in_empty(tmp):
    put(tmp, "in/notes.txt", b"no images here")
    return [TOOL, "in", "out"] + FAST


def _single_photo_beside(tmp):
    face_folder(tmp, "a.jpg")
    return [TOOL, "in/a.jpg", "in"] + FAST


def _single_photo(tmp):
    face_folder(tmp, "a.png")
    return [TOOL, "in/a.png", "out", "--ext", "webp"] + FAST


def _same_stem(tmp):
    face_folder(tmp, "a.jpg", "a.png", "A.webp")
    return [TOOL, "in", "out"] + FAST


def _list_same_basename(tmp):
    face_folder(tmp, "x/a.jpg", "y/a.jpg")
    put(tmp, "list.txt", b"in/x/a.jpg\nin/y/a.jpg\n")
    return [TOOL, "list.txt", "out"] + FAST


def _list_hostile_entries(tmp):
    face_folder(tmp, "a.jpg")
    put(tmp, "elsewhere/b.jpg", face_bytes())
    lines = ["in/a.jpg", os.path.join(tmp, "elsewhere", "b.jpg"), "../../../../../../etc/hostname",
             "in", "missing.jpg", "# a comment", ""]
    put(tmp, "lists/list.txt", "\n".join("../" + l if l.startswith("in") else l for l in lines).encode())
    return [TOOL, "lists/list.txt", "out"] + FAST


def _list_names_file_in_out(tmp):
    put(tmp, "out/a.png", face_bytes("PNG"))  # the user's file already in OUT, listed as an input
    put(tmp, "list.txt", b"out/a.png\n")
    return [TOOL, "list.txt", "out", "--overwrite"] + FAST


def _list_not_utf8(tmp):
    put(tmp, "list.txt", b"in/\xff\xfe\x00a.jpg\n")
    return [TOOL, "list.txt", "out"] + FAST


def _damaged_images(tmp):
    face_folder(tmp, "good.jpg")
    put(tmp, "in/truncated.jpg", truncated_jpeg())
    put(tmp, "in/text.png", b"this is text" * 10)
    put(tmp, "in/empty.jpg", b"")
    put(tmp, "in/tiny.png", _png(np.zeros((8, 8, 3), np.uint8)))
    return [TOOL, "in", "out"] + DLIB


def _all_damaged(tmp):
    put(tmp, "in/truncated.jpg", truncated_jpeg())
    put(tmp, "in/wall.png", _png(np.full((64, 64, 3), 128, np.uint8)))
    return [TOOL, "in", "out"] + DLIB


def _odd_file_names(tmp):
    face_folder(tmp, "tab\tname.jpg")
    put(tmp, os.fsdecode(b"in/caf\xe9.jpg"), b"not an image, and a name that is not UTF-8")
    put(tmp, "in/new\nline.jpg", b"not an image either")
    return [TOOL, "in", "out"] + FAST


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _ext(ext):
    def make(tmp):
        face_folder(tmp, "a.png")
        return [TOOL, "in", "out", "--ext", ext] + FAST
    return make


def _bad_option(*options):
    def make(tmp):
        face_folder(tmp)
        return [TOOL, "in", "out"] + FAST + list(options)
    return make


def _odd_lines_report(proc, tmp):
    rows = report_rows(tmp)  # one row per skipped file whatever its name holds
    assert len(rows) == 2 and all(len(row) == 2 for row in rows), rows
    assert any("caf\\xe9" in name for name, _ in rows) and any("new\\nline" in name for name, _ in rows), rows
    assert os.listdir(os.path.join(tmp, "out")) and os.path.isfile(os.path.join(tmp, "out", "tab\tname.png"))


REFUSED = [
    AlignCase("dir_equals_out", lambda t: _dir_dir(t), ["inside the input folder", "--allow-output-in-input"]),
    AlignCase("dir_equals_out_overwrite", lambda t: _dir_dir(t, "--overwrite"), ["inside the input folder"]),
    AlignCase("dot_dot", _dir_dir_dot, ["inside the input folder"]),
    AlignCase("out_inside_in", lambda t: _out_inside_in(t), ["in/aligned", "inside the input folder"]),
    AlignCase("out_inside_in_via_symlink", _out_inside_in_via_link, ["inside the input folder"]),
    AlignCase("out_is_a_file", _out_is_file, ["out", "is a file, not a folder"]),
    AlignCase("out_under_a_file", _out_under_file, ["notes.txt", "is a file, not a folder"]),
    AlignCase("in_missing", _in_missing, ["nowhere", "not found"]),
    AlignCase("in_unsupported_file", _in_unsupported, ["readme.md", "not a folder, .zip, .txt"]),
    AlignCase("in_without_images", _in_empty, ["in", "no images found"]),
    AlignCase("not_a_zip", _not_a_zip, ["photos.zip", "not a readable zip archive"]),
    AlignCase("out_beside_the_zip", _zip_beside_out, ["data", "holds input files"]),
    AlignCase("out_beside_the_photo", _single_photo_beside, ["holds input files"]),
    AlignCase("list_names_a_file_in_out", _list_names_file_in_out, ["out", "holds input files"]),
    AlignCase("list_not_utf8", _list_not_utf8, ["list.txt", "not a UTF-8"]),
    AlignCase("size_zero", _bad_option("--size", "0"), ["--size"]),
    AlignCase("workers_zero", _bad_option("--workers", "0"), ["--workers"]),
    AlignCase("face_unknown", _bad_option("--face", "biggest"), ["--face", "largest"]),
    AlignCase("face_negative", _bad_option("--face", "-1"), ["--face"]),
    AlignCase("ext_gif", _bad_option("--ext", "gif"), ["--ext"]),
    AlignCase("min_score_nan", _bad_option("--min-score", "nan"), ["--min-score", "finite"]),
]

PARTIAL = [
    AlignCase("zip_absolute_member", _zip_absolute, code=0, outputs=["out/good.png", f"out/{REPORT}"],
              check=all_of(expect_skipped(("victim/evil.jpg", "absolute path"),
                                          ("victim2/deeper/evil2.jpg", "absolute")),
                           stdout_has("1 aligned (ffhq), 0 already done, 2 skipped of 3"))),
    AlignCase("zip_only_dotdot_members", _zip_dotdot, code=1, outputs=[f"out/{REPORT}"],
              check=all_of(expect_skipped(("../evil.jpg", "'..'"), ("a/../../evil2.jpg", "'..'"),
                                          ("sub/../../../evil3.jpg", "'..'"), ("../notes.txt", "'..'")),
                           stdout_has("0 aligned (ffhq), 0 already done, 4 skipped of 4"))),
    AlignCase("zip_dotdot_and_good", _zip_dotdot_and_good, code=0, outputs=["out/ok/good.png", f"out/{REPORT}"],
              check=all_of(expect_skipped(("../evil.jpg", "climbs out")), image_format("out/ok/good.png", "PNG"))),
    AlignCase("zip_backslash_names", _zip_backslash, code=0, outputs=["out/sub/face.png", f"out/{REPORT}"],
              check=expect_skipped(("..\\evil.jpg", "'..'"), ("C:\\evil2.jpg", "absolute"))),
    AlignCase("zip_duplicate_names", _zip_duplicates, code=0,
              outputs=["out/a.png", "out/a_jpg.png", f"out/{REPORT}"],
              check=all_of(expect_skipped(("a.jpg", "duplicate member name")), stdout_has("a.jpg -> a_jpg.png"))),
    AlignCase("zip_link_out_of_out", _zip_symlink_in_out, code=0, outputs=["out/good.png", f"out/{REPORT}"],
              check=expect_skipped(("sub/evil.jpg", "symbolic link"))),
    AlignCase("zip_damaged_members", _zip_damaged_member, code=0, outputs=["out/good.png", f"out/{REPORT}"],
              check=expect_skipped(("broken.png", "cannot read from the archive"), ("text.jpg", "not an image"))),
    AlignCase("dir_equals_out_allowed", _dir_dir_allowed, code=0, outputs=["in/b.png", f"in/{REPORT}"],
              check=expect_skipped(("a.png", "would replace an input file"), out="in")),
    AlignCase("out_inside_in_allowed", lambda t: _out_inside_in(t, "--allow-output-in-input"), code=0,
              outputs=["in/aligned/a.png"]),
    AlignCase("same_stem_inputs", _same_stem, code=0, outputs=["out/A.png", "out/a_jpg.png", "out/a_png.png"],
              check=stdout_has("2 outputs renamed", "a.jpg -> a_jpg.png", "a.png -> a_png.png")),
    AlignCase("list_same_basename", _list_same_basename, code=0, outputs=["out/a.png", "out/a_jpg.png"],
              check=stdout_has("in/y/a.jpg -> a_jpg.png")),
    AlignCase("list_entries_anywhere", _list_hostile_entries, code=0,
              outputs=["out/a.png", "out/b.png", f"out/{REPORT}"],
              check=expect_skipped(("etc/hostname", "not an image"), ("in", "is a folder"),
                                   ("missing.jpg", "file not found"))),
    AlignCase("damaged_images", _damaged_images, code=0, outputs=["out/good.png", f"out/{REPORT}"],
              check=expect_skipped(("truncated.jpg", "truncated"), ("text.png", "not an image"),
                                   ("empty.jpg", "empty file"), ("tiny.png", "smaller than"))),
    AlignCase("all_damaged", _all_damaged, code=1, outputs=[f"out/{REPORT}"],
              check=expect_skipped(("truncated.jpg", "truncated"), ("wall.png", "no face found"))),
    AlignCase("odd_file_names", _odd_file_names, code=0, outputs=["out/tab\tname.png", f"out/{REPORT}"],
              check=_odd_lines_report),
    AlignCase("single_photo_webp", _single_photo, code=0, outputs=["out/a.webp"],
              check=image_format("out/a.webp", "WEBP")),
    AlignCase("ext_jpg", _ext("jpg"), code=0, outputs=["out/a.jpg"], check=image_format("out/a.jpg", "JPEG")),
]


@pytest.mark.parametrize("case", REFUSED + PARTIAL, ids=str)
def test_hostile_input(case, tmp_path):
    tmp = str(tmp_path)
    laid_out = {}

    def make(scratch):
        argv = case.make(scratch)
        laid_out.update(tree(scratch))
        return argv

    proc = check_case(dataclasses.replace(case, make=make), tmp)
    created = sorted(p for p, digest in tree(tmp).items() if digest != "dir" and p not in laid_out)
    assert created == sorted(case.outputs), f"{created}\nstdout:\n{proc.stdout}"
    if case.code != 2:
        assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    leftovers = [name for _, _, files in os.walk(tmp) for name in files if name.startswith(".tmp_")]
    assert not leftovers, leftovers  # every write went through a temporary name that was renamed
    if case.check is not None:
        case.check(proc, tmp)


def test_output_inside_input_is_not_read_back_on_rerun(tmp_path):
    """With --allow-output-in-input, a second run must not align the first run's outputs."""
    tmp = str(tmp_path)
    face_folder(tmp, "a.jpg")
    argv = [TOOL, "in", "in/aligned", "--allow-output-in-input"] + FAST
    first = run_tool(argv, cwd=tmp)
    assert first.returncode == 0 and "1 aligned (center-crop)" in first.stdout, first.stdout + first.stderr
    second = run_tool(argv, cwd=tmp)
    assert second.returncode == 0, second.stderr
    assert "0 aligned (center-crop), 1 already done, 0 skipped of 1" in second.stdout, second.stdout
    assert "1 files under in/aligned not read as inputs" in second.stdout, second.stdout
    assert sorted(os.listdir(tmp_path / "in" / "aligned")) == ["a.png"]
