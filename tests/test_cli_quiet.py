"""`wbcap -q`: only warnings and errors. Result lines go (`wbcap image`, `run`, `demo`, `export`,
`view --html`, `weights fetch|import`, `train merge`); `wbcap doctor` prints only what is missing
or warned about; `bench`, `weights list|verify` and a served `view` keep what they are run for."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.demo import try_without_files
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_quiet_silences_the_result_lines_of_view_html_and_export(tmp_path, micro_ckpt, body_dir):
    """`wbcap -q view --html` printed the page's path (found by a user trial), as `export` its files."""
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "run"
    r = run("-q", "run", video, "-o", out, "--detector", "full", "--no-render", "--min-track", "1",
            "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0 and r.stdout == "", r.output
    page = tmp_path / "page.html"
    r = run("view", out, "--html", page)
    assert r.exit_code == 0 and r.stdout == f"{page}\n", r.output
    r = run("-q", "view", out, "--html", tmp_path / "quiet.html")
    assert r.exit_code == 0 and r.stdout == "" and (tmp_path / "quiet.html").is_file(), r.output
    r = run("export", out, "--format", "bvh", "--dest", tmp_path / "loud")
    assert r.exit_code == 0 and r.stdout == f"{tmp_path / 'loud' / 'track_0.bvh'}\n", r.output
    r = run("-q", "export", out, "--format", "bvh", "--dest", tmp_path / "quiet")
    assert r.exit_code == 0 and r.stdout == "" and (tmp_path / "quiet" / "track_0.bvh").is_file(), r.output


def test_quiet_doctor_prints_only_what_needs_attention_and_weights_list_its_list(body_dir):
    loud = run("doctor", "--body-models", body_dir)
    quiet = run("-q", "doctor", "--body-models", body_dir)
    assert quiet.exit_code == loud.exit_code == 1, quiet.output  # (no checkpoint installed)
    assert "[ok  ] SMPL-X neutral" in loud.stdout and "[ok  ]" not in quiet.stdout, quiet.output
    assert "[MISS] checkpoint hand4whole: " in quiet.stdout and "       fix: " in quiet.stdout, quiet.output
    assert quiet.stdout.splitlines()[-2:] == loud.stdout.splitlines()[-2:] == [
        "1 required item(s) missing; `wbcap demo` still runs without them.", try_without_files(body=False)]
    assert set(quiet.stdout.splitlines()) < set(loud.stdout.splitlines())
    listed = run("weights", "list")
    assert listed.exit_code == 0 and run("-q", "weights", "list").stdout == listed.stdout != ""


@pytest.mark.parametrize("option", ["-q", "--quiet", "--verbose", "--debug"])
def test_an_option_of_wbcap_given_after_the_command_says_where_it_goes(option):
    """`wbcap run X -q` said "No such option '-q'" (a user trial; `--verbose` with click's guesses
    of other options): one line saying that it goes before the command."""
    r = CliRunner().invoke(cli, ["run", "clip.mp4", option], prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr == (
        f"error: No such option '{option}': {option} is an option of wbcap itself, given before the command "
        f"(wbcap {option} run ...) (see 'wbcap run --help')\n"), r.output
    r = CliRunner().invoke(cli, ["run", "clip.mp4", "--bogus"], prog_name="wbcap")
    assert r.exit_code == 2 and "itself" not in r.stderr, r.output


def test_wbcaps_own_usage_errors_are_one_line_and_say_where_a_commands_option_goes():
    """`wbcap --offline image X` printed click's usage block, unlike every command's errors (a
    photo user's trial): one line, saying that a command's option goes after its name."""
    r = CliRunner().invoke(cli, ["--offline", "image", "x.jpg"], prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr == (
        "error: No such option '--offline' of wbcap itself: a command's options go after its name "
        "(wbcap image --offline ...) (see 'wbcap --help')\n"), r.output
    r = CliRunner().invoke(cli, ["--bogus", "doctor"], prog_name="wbcap")  # (an option of neither: click's guess)
    assert r.exit_code == 2 and r.stderr == "error: No such option '--bogus'. Did you mean '--verbose'? (see 'wbcap --help')\n"
    r = CliRunner().invoke(cli, ["nosuch"], prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr == "error: No such command 'nosuch' (see 'wbcap --help')\n", r.output
