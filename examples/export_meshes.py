"""Run wbcap on a folder of images and save one OBJ per person, from Python.

    python examples/export_meshes.py photos/ out/
"""

import sys
from pathlib import Path

from wbcap import Pipeline
from wbcap.detect.hog import HOGDetector
from wbcap.export.obj import write_obj
from wbcap.io.images import iter_image_paths, load_image


def main(src: str, dst: str) -> None:
    pipe = Pipeline.from_files()  # files found as `wbcap doctor` shows
    detector = HOGDetector()
    for path in iter_image_paths([src]):
        for person in pipe(load_image(path), detector=detector):
            write_obj(Path(dst) / f"{path.stem}_person{person.index}.obj", person.vertices, pipe.faces)


if __name__ == "__main__":
    main(*sys.argv[1:3])
