"""wbcap.atomic's writes onto what is already at the final name: a symbolic link is replaced (one
in a folder someone else made could lead anywhere), or written through where the user named the
file; a device, FIFO or socket is refused (renaming over it would replace the node itself), and
an output that is one of the command's inputs is refused before any work."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from wbcap.atomic import atomic_path, atomic_write_text, check_writable_file
from wbcap.cli import cli
from wbcap.errors import InputError


def test_a_symbolic_link_the_user_named_is_written_through(tmp_path):
    target = tmp_path / "data" / "result.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new", through_link=True)
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # (no temporary left)
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "data" / "later.json")
    atomic_write_text(dangling, "made", through_link=True)
    assert dangling.is_symlink() and (tmp_path / "data" / "later.json").read_text() == "made"


def test_a_symbolic_link_where_wbcap_names_the_file_is_replaced_not_written_through(tmp_path):
    """A security review: a run folder from someone else with `track_0.npz -> ~/.bashrc` had
    `wbcap export` put the npz in the user's .bashrc. The link goes, what it led to stays; a file
    wbcap appends to there is refused (raw records, scalars), not appended through."""
    from wbcap.atomic import open_own_file

    secret = tmp_path / "home" / ".bashrc"
    secret.parent.mkdir()
    secret.write_text("kept")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("track_0.npz", "dangling.json", "to_dev_null.json"):
        (run / name).symlink_to(secret if name == "track_0.npz" else
                                "/dev/null" if name == "to_dev_null.json" else tmp_path / "home" / "made.json")
        atomic_write_text(run / name, "new")
        assert not (run / name).is_symlink() and (run / name).read_text() == "new"
    assert secret.read_text() == "kept" and sorted(p.name for p in secret.parent.iterdir()) == [".bashrc"]
    (run / "raw.jsonl").symlink_to(secret)
    with pytest.raises(InputError) as err:
        open_own_file(run / "raw.jsonl")
    assert str(err.value) == (f"{run / 'raw.jsonl'}: is a symbolic link (to {secret}) where wbcap keeps its own file, "
                              "which it does not write through; remove the link")
    assert secret.read_text() == "kept"
    (run / "raw.jsonl").unlink()
    os.link(secret, run / "raw.jsonl")  # (a break-it trial: a hard link was cut and refilled by a resume)
    with pytest.raises(InputError) as err:
        open_own_file(run / "raw.jsonl", "r+b", encoding=None)
    assert str(err.value) == (f"{run / 'raw.jsonl'}: has 1 other name(s) (hard links), which a change here would "
                              f"change too; make it a file of its own (cp {run / 'raw.jsonl'} {run / 'raw.jsonl'}.copy "
                              f"&& mv {run / 'raw.jsonl'}.copy {run / 'raw.jsonl'})")
    assert secret.read_text() == "kept"
    with open_own_file(run / "scalars.jsonl") as f:  # (a file of its own: made, then appended to)
        f.write("a\n")
    with open_own_file(run / "scalars.jsonl") as f:
        f.write("b\n")
    assert (run / "scalars.jsonl").read_text() == "a\nb\n"


def test_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.json: is a FIFO, not a file; give a file name"):
        check_writable_file(fifo)
    with pytest.raises(InputError, match="is a FIFO"), atomic_path(fifo) as tmp:
        tmp.write_text("x")
    link = tmp_path / "to_pipe.json"
    link.symlink_to(fifo)
    with pytest.raises(InputError, match=r"to_pipe\.json \(-> .*pipe\.json\): is a FIFO"):
        atomic_write_text(link, "x", through_link=True)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.json", "to_pipe.json"]


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="no /dev/null device here")
def test_a_device_is_refused_before_any_write():
    with pytest.raises(InputError, match="/dev/null: is a device, not a file"):
        check_writable_file("/dev/null")
    assert Path("/dev/null").is_char_device()


def test_an_output_that_is_an_input_is_refused(tmp_path):
    ck = tmp_path / "snapshot_6.pth.tar"
    ck.write_bytes(b"checkpoint")
    alias = tmp_path / "alias.pth.tar"
    alias.symlink_to(ck)
    for out in (ck, alias, tmp_path / "." / "snapshot_6.pth.tar"):
        with pytest.raises(InputError, match=r"is also the input --checkpoint \(.*\) and would be overwritten"):
            check_writable_file(out, inputs={"--checkpoint": ck})
    check_writable_file(tmp_path / "other.json", inputs={"--checkpoint": ck, "--body-models": None})


def test_merge_refuses_to_write_over_its_own_input(tmp_path):
    body, hand = tmp_path / "body.pth.tar", tmp_path / "hand.pth.tar"
    body.write_bytes(b"body")
    hand.write_bytes(b"hand")
    r = CliRunner().invoke(cli, ["train", "merge", "--body", str(body), "--hand", str(hand), "-o", str(body)])
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: {body}: is also the input --body ({body}) and would be overwritten; give another file name for this output")
    assert body.read_bytes() == b"body"


def test_a_loop_of_links_is_one_line(tmp_path):
    loop = tmp_path / "a.json"
    loop.symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(loop)
    with pytest.raises(InputError, match=r"a\.json: a symbolic link that leads nowhere \(.*\); give a file name"):
        check_writable_file(loop)
    with pytest.raises(InputError, match="leads nowhere"):
        atomic_write_text(loop, "x", through_link=True)
    assert loop.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]



def test_an_output_named_with_a_trailing_slash_is_a_folder_not_a_file(tmp_path):
    """`--out results/` (a folder that does not exist yet) wrote a file named `results`: Path drops
    the slash (a user trial: eval --out, bench --json-out). Refused in one line, nothing made."""
    body, hand = tmp_path / "body.pth.tar", tmp_path / "hand.pth.tar"
    body.write_bytes(b"body")
    hand.write_bytes(b"hand")
    out = f"{tmp_path / 'results'}/"
    expected = f"error: {out}: ends with /, so it names a folder; give a file name for this output (e.g. {out}result.json)"
    for args in (["train", "merge", "--body", str(body), "--hand", str(hand), "-o", out],
                 ["bench", "--detect-only", "--device", "cpu", "--json-out", out],
                 ["eval", "--dataset", "EHF", "--data-root", str(tmp_path), "--out", out]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and r.stderr.strip() == expected, (args, r.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["body.pth.tar", "hand.pth.tar"]
    check_writable_file(tmp_path / "results" / "r.json")  # (a file in it is fine)


@pytest.mark.parametrize("deep", [False, True])
def test_a_dangling_link_on_the_way_is_named(tmp_path, deep):
    """A user trial: `-o` a link to nothing said "cannot create the output folder (File exists)"."""
    from wbcap.atomic import check_writable_destination
    from wbcap.errors import InputError

    os.symlink(tmp_path / "gone", tmp_path / "out")
    target = tmp_path / "out" / "run" if deep else tmp_path / "out"
    with pytest.raises(InputError) as err:
        check_writable_destination(target)
    assert str(err.value) == (f"{tmp_path / 'out'}: is a link to {tmp_path / 'gone'}, which does not exist, so {target} "
                              "cannot be created; create what it points to, or choose another output folder")
    (tmp_path / "gone").mkdir()
    check_writable_destination(target)


def test_an_output_never_replaces_a_file_in_wbcaps_own_folders(tmp_path, monkeypatch):
    """A user trial: `wbcap bench --detect-only --json-out <weights>/snapshot_6.pth.tar` (and
    eval --out, train merge -o) turned the installed checkpoint into a JSON file: the outputs
    refuse only the command's own inputs, and these were not. A new file there is still taken."""
    from wbcap.paths import body_models_dir, user_cache_dir, weights_dir

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    for folder, name in ((weights_dir(), "snapshot_6.pth.tar"), (body_models_dir() / "smplx", "SMPLX_NEUTRAL.npz"),
                         (user_cache_dir() / "demo_body_models", "x.npz")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"kept")
        with pytest.raises(InputError, match=r"is a file wbcap keeps in its own folder .* would be overwritten; give"):
            check_writable_file(folder / name)
        check_writable_file(folder / "new.json")
    (tmp_path / "home" / "notes.json").write_text("{}")
    check_writable_file(tmp_path / "home" / "notes.json")  # (the home folder itself is not one of them)
