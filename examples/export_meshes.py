"""Run wbcap on a folder of images and save one OBJ per person, from Python.

    python examples/export_meshes.py photos/ out/ [--detector hog|full|auto] [--checkpoint F] [--body-models F]

Writes ``out/<name>_person<k>.obj``; ``<name>`` is the image's stem, or its path under the
inputs' folder when two images share a stem (the rule of ``wbcap image``). An image's meshes from
an earlier run into the same folder are replaced as a whole (a rerun that finds fewer people
leaves none of the old extra files).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from wbcap import Pipeline
from wbcap.errors import WbcapError
from wbcap.export.image_outputs import output_names
from wbcap.export.obj import write_obj
from wbcap.io.images import iter_image_paths, load_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="image file, folder or glob")
    parser.add_argument("dst", help="output folder (created if missing)")
    parser.add_argument("--detector", default="hog", choices=("hog", "full", "auto"),
                        help="person detector (default: hog)")
    parser.add_argument("--checkpoint", default=None, help="Hand4Whole checkpoint (default: as `wbcap doctor` finds it)")
    parser.add_argument("--body-models", default=None, help="SMPL-X file or folder (default: as `wbcap doctor` finds it)")
    args = parser.parse_args(argv)

    # Check everything cheap before the slow part: inputs, names, output folder.
    try:
        paths = iter_image_paths([args.src])
        names = output_names(paths)
    except WbcapError as exc:
        parser.error(str(exc))
    dst = Path(args.dst)
    if dst.exists() and not dst.is_dir():
        parser.error(f"{dst}: exists and is not a folder; pass a folder")
    dst.mkdir(parents=True, exist_ok=True)

    try:  # (files found as `wbcap doctor` shows, unless given)
        pipe = Pipeline.from_files(checkpoint=args.checkpoint, body_models=args.body_models)
    except WbcapError as exc:  # a missing or unreadable model file: one line, how to get it
        parser.error(str(exc))
    written, failed = 0, 0
    for path, name in zip(paths, names):
        try:
            people = pipe(load_image(path), detector=args.detector, source=str(path))
        except WbcapError as exc:  # unreadable image, nobody found: say so and go on
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        stem = dst / f"{name}_person"
        stem.parent.mkdir(parents=True, exist_ok=True)
        earlier = re.compile(re.escape(stem.name) + r"\d+\.obj")
        for old in [p for p in stem.parent.iterdir() if earlier.fullmatch(p.name)]:  # (an earlier run's)
            old.unlink()
        for person in people:
            write_obj(f"{stem}{person.index}.obj", person.vertices, pipe.faces)
            written += 1
    print(f"{written} mesh(es) written to {dst}" + (f"; {failed} image(s) skipped" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
