"""Library messages name settings, not CLI flags; the ``wbcap`` command names its flags (issue 12, item 4).

:func:`wbcap.errors.setting` gives the setting's Python name outside the CLI and the running
command's option while ``wbcap`` runs one (:func:`wbcap.cli.option_spelling`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import threading

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wbcap.cli import cli, option_spelling
from wbcap.errors import InputError, setting, spelling


def _one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0][len("error: "):]


def test_setting_outside_the_cli_is_the_python_name():
    assert setting("max_gap") == "max_gap"
    assert setting("allow_pickle", api="allow_pickle=True") == "allow_pickle=True"
    with spelling(lambda name: f"<{name}>"):
        assert setting("max_gap") == "<max_gap>"
        assert setting("allow_pickle", api="allow_pickle=True") == "<allow_pickle>"
    assert setting("max_gap") == "max_gap"  # restored


def test_device_error_names_the_setting_in_python_and_the_flag_in_the_cli():
    from wbcap.model.device import resolve_device

    with pytest.raises(InputError) as err:
        resolve_device("gpu")
    python_text = str(err.value)
    assert python_text == "device 'gpu' is not understood; use auto, cpu, cuda or cuda:N (N = 0, 1, ...)"

    r = CliRunner().invoke(cli, ["run", "no_such_video.mp4", "--device", "gpu"])
    assert _one_error_line(r) == "--" + python_text
    assert setting("device") == "device"  # the command's spelling ends with it


def _two_images_named_alike(tmp_path):
    for cam in ("cam1", "cam2"):
        (tmp_path / cam).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cam / "0001.jpg")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"0001.jpg": [[0, 0, 4, 8]]}))
    return [str(tmp_path / "cam1" / "0001.jpg"), str(tmp_path / "cam2" / "0001.jpg")], str(boxes)


def test_a_setting_whose_flag_differs_from_its_name(tmp_path):
    """``boxes_file`` is ``--boxes`` on the command line: the same refusal, in both spellings."""
    from wbcap.image_app import ImageJob, run_images

    paths, boxes = _two_images_named_alike(tmp_path)
    with pytest.raises(InputError) as err:
        run_images(ImageJob(paths=tuple(paths), out=str(tmp_path / "out"), boxes_file=boxes))
    python_text = str(err.value)
    assert python_text.endswith("process them in separate runs, each with its own boxes_file file")

    r = CliRunner().invoke(cli, ["image", *paths, "-o", str(tmp_path / "out"), "--boxes", boxes])
    assert _one_error_line(r) == python_text.replace("its own boxes_file file", "its own --boxes file")


@click.command()
@click.argument("source")
@click.option("-o", "--out")
@click.option("--min-height", "min_height_frac", type=float)
@click.option("--obj", "write_obj", is_flag=True)
def _probe(source, out, min_height_frac, write_obj):
    """Prints how this command spells some settings (as the ``wbcap`` group installs it)."""
    ctx = click.get_current_context()
    names = ("min_height_frac", "write_obj", "out", "source", "max_gap", "verbose")
    with spelling(lambda name: option_spelling(ctx, name)):
        click.echo(" ".join(setting(n) for n in names))
        seen = []
        # a thread started as wbcap starts its workers: in a copy of the starter's context
        worker = threading.Thread(target=contextvars.copy_context().run, args=(lambda: seen.append(setting("write_obj")),))
        worker.start()
        worker.join()
        click.echo(seen[0])


def test_option_spelling_rules():
    """Declared first form, argument metavar, ``--`` + dashes for settings the command lacks;
    off the main thread (no click context there) the context given stands in."""
    r = CliRunner().invoke(_probe, ["in.mp4"], catch_exceptions=False)
    assert r.output.splitlines() == ["--min-height --obj -o SOURCE --max-gap --verbose", "--obj"]


def test_nested_group_and_parent_options():
    """``wbcap train body``: the innermost command's options first, then its groups'."""
    group = click.Group("g", params=[click.Option(["-v", "--verbose"], count=True)])
    inner = click.Group("train")
    group.add_command(inner)

    @inner.command("body")
    @click.option("--data-root")
    def body(data_root):
        ctx = click.get_current_context()
        click.echo(f"{option_spelling(ctx.find_root(), 'data_root')} {option_spelling(ctx, 'verbose')}")

    r = CliRunner().invoke(group, ["train", "body"], catch_exceptions=False)
    assert r.output == "--data-root -v\n"


def test_a_setting_of_another_command_is_named_by_that_commands_option():
    """``wbcap demo`` has no ``--min-track``: its messages name ``wbcap run``'s option for the
    setting (``min_length``) with the command that takes it (``wbcap run --min-track``), not a
    made-up ``--min-length``; a setting no command has keeps the ``--`` + dashes form."""
    r = CliRunner().invoke(cli, ["demo", "--help"])
    assert r.exit_code == 0 and "--min-track" not in r.output
    group = click.Group("g")

    @group.command("run")
    @click.option("--min-track", "min_length", type=int)
    def run(min_length):
        pass

    @group.command("demo")
    def demo():
        ctx = click.get_current_context()
        click.echo(f"{option_spelling(ctx, 'min_length')} {option_spelling(ctx, 'no_such_setting')}")

    r = CliRunner().invoke(group, ["demo"], catch_exceptions=False)
    assert r.output == "g run --min-track --no-such-setting\n"
    with cli.make_context("wbcap", ["demo"]) as ctx:  # the real group: run's option
        assert option_spelling(ctx, "min_length") == "wbcap run --min-track"
        assert option_spelling(ctx, "score_threshold") == "wbcap run --score-threshold"  # (run, image, then the rest)
        assert option_spelling(ctx, "score_threshold", first="image") == "wbcap image --score-threshold"
        assert option_spelling(ctx, "out") == "wbcap run -o"  # (not `wbcap bench`'s or `wbcap demo`'s)


def test_log_lines_follow_the_same_rule(caplog):
    from wbcap.track.collect import Collected, report_losses

    col = Collected(frames={0: 0.0}, per_track={}, kept=set(), dropped={3: 2}, min_length=3)
    with caplog.at_level(logging.WARNING, logger="wbcap.track.collect"):
        report_losses(col, 1, "in.mp4", "auto")
        flags = {"min_length": "--min-track"}
        with spelling(flags.__getitem__):
            report_losses(col, 1, "in.mp4", "auto")
    python, cli_lines = caplog.messages[:1], caplog.messages[1:]
    assert python == ["dropped 1 short track(s) (2 person-frames; id 3) seen in fewer than 3 frames (min_length); "
                      "lower it to keep them"]
    assert cli_lines == [m.replace("min_length", "--min-track") for m in python]
    caplog.clear()  # (--every 5: tracks break where boxes stop overlapping; a lower --min-track only keeps the pieces)
    with caplog.at_level(logging.WARNING, logger="wbcap.track.collect"), spelling(lambda n: "--" + n.replace("_", "-")):
        report_losses(dataclasses.replace(col, frame_stride=5), 1, "in.mp4", "auto")
    assert caplog.messages == ["dropped 1 short track(s) (2 person-frames; id 3) seen in fewer than 3 frames (--min-length); "
                               "lower it to keep them, or pass a smaller --every than 5 (tracks follow boxes that "
                               "overlap from one processed frame to the next, and break where people move further)"]


def _all_param_names() -> set[str]:
    names: set[str] = set()
    ctx = click.Context(cli)
    todo: list[click.Command] = [cli]
    while todo:
        command = todo.pop()
        names |= {p.name for p in command.params}
        if isinstance(command, click.Group):
            todo += [command.get_command(ctx, n) for n in command.list_commands(ctx)]
    return names


def test_every_setting_named_in_the_library_is_a_cli_option():
    """A typo in ``setting("...")`` would print a flag that no command has."""
    import re
    from pathlib import Path

    import wbcap

    root = Path(wbcap.__file__).parent
    used = {m for f in root.rglob("*.py") if "cli" not in f.relative_to(root).parts
            for m in re.findall(r"""\bsetting\(\s*["']([a-z_]+)["']""", f.read_text(encoding="utf-8"))}
    assert {"device", "every", "boxes_file", "min_length", "out"} <= used
    assert used - _all_param_names() == set()


def test_respelled_keeps_the_api_words_of_other_settings():
    """Outside a command's spelling, a respelled block kept only its one setting's words and gave
    the bare name for the others, not their ``api`` words (a review)."""
    from wbcap.errors import respelled, setting, spelling

    with respelled("init_checkpoint", "ft.toml's init_checkpoint"):
        assert setting("init_checkpoint") == "ft.toml's init_checkpoint"
        assert setting("resume", api="resume=True") == "resume=True" and setting("out") == "out"
    with spelling(lambda name: f"--{name}"), respelled("init_checkpoint", "x.toml's init_checkpoint"):
        assert setting("init_checkpoint") == "x.toml's init_checkpoint" and setting("resume", api="r") == "--resume"
    assert setting("resume", api="resume=True") == "resume=True"


def test_shell_word_pastes_back_to_the_same_name():
    """Commands wbcap prints quote their names so that bash gives them back byte for byte: a
    newline, an escape or a byte that is not UTF-8 had come out as ``'nl\\nname'`` (the two
    characters), and a folder named ``-dash`` as an option (a break-it trial)."""
    import os
    import subprocess

    from wbcap.console import printable, shell_word

    for name in ("plain", "my out", "it's", "-dash", "nl\nname", "esc\x1b[31mred", os.fsdecode(b"bad\xffname"),
                 "tab\there", "é ü", "$HOME", "back\\slash'quote"):
        word = shell_word(name, option_safe=True)
        assert printable(word, one_line=True) == word  # (nothing left to escape when printed)
        said = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True).stdout
        assert said == os.fsencode(("./" if name.startswith("-") else "") + name), (name, word)
    assert shell_word("-dash") == "-dash" and shell_word("/a b") == "'/a b'"


def test_a_name_that_is_not_utf8_is_printed_with_its_bytes_as_shell_words_write_them():
    """A locale trial: `missing\\xe9.jpg` (Latin-1) was printed `missing\\udce9.jpg`, neither the name
    nor pasteable; it is `\\xe9`, as `shell_word` writes it, in error, result and log lines."""
    import os

    from wbcap.console import printable, shell_word

    name = os.fsdecode(b"caf\xe9.jpg")
    assert printable(f"error: {name}: no such file") == "error: caf\\xe9.jpg: no such file"
    assert shell_word(name) == "$'caf\\xe9.jpg'"
    assert printable("naïve 😀 \x1b") == "naïve 😀 \\x1b"  # (characters that are UTF-8 stay)
