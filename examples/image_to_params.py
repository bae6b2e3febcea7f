"""Recover SMPL-X parameters for the people in one photo and print a summary.

    python examples/image_to_params.py photo.jpg [--checkpoint snapshot_6.pth.tar]

Uses the HOG person detector (``detector="hog"``; also ``"auto"``, ``"torchvision"``, ``"full"``
or a detector object); pass boxes to ``pipe(image, boxes=[(x, y, w, h)])`` instead.
"""

import argparse
import sys

from wbcap import Pipeline
from wbcap.errors import WbcapError
from wbcap.io.images import load_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--body-models", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    try:
        image = load_image(args.image)  # before the slow model loading: a typo fails at once
        pipe = Pipeline.from_files(checkpoint=args.checkpoint, body_models=args.body_models, device=args.device)
    except WbcapError as exc:
        parser.error(str(exc))
    try:
        people = pipe(image, detector="hog")
    except WbcapError as exc:  # nobody found: one line, how to give boxes instead
        print(f"error: {args.image}: {str(exc).removeprefix('image: ')}", file=sys.stderr)
        return 1
    for person in people:
        p = person.params  # SMPLXParams: a batch of one, axis-angle, SMPL-X's names
        print(
            f"person {person.index}: box {person.box.round(1).tolist()}, root {p['global_orient'][0].numpy().round(3)}, "
            f"depth {float(p['transl'][0, 2]):.2f} m, focal {person.focal[0]:.0f} px"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
