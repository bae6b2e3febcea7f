"""The layout of a ``wbcap image`` result, in one place for its writer
(:mod:`wbcap.export.image_outputs`) and its readers (``wbcap view``; ``wbcap run`` and ``wbcap
train``, which name such a folder when it is given as their output).

``OUT/<photo>/person_<k>/`` holds one person's files (:data:`RESULT_FILES`), ``k`` from 0 in the
photo's detection order.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["KEYPOINTS_FILE", "PERSON_DIR", "RESULT_FILES", "is_image_result"]

#: A person's 2D keypoints in OpenPose's JSON (``--openpose``: :mod:`wbcap.export.openpose`).
KEYPOINTS_FILE = "output_keypoints.json"
#: Files of one person's folder.
RESULT_FILES = ("output.obj", "smplx_param.json", "render_original_img.jpg", "render_cropped_img.jpg",
                "output.glb", "output.bvh", "output.fbx", "output.npz", "output.csv", "output_angles.csv", "output.trc",
                "output.c3d",
                KEYPOINTS_FILE)
#: A person's folder name; group 1 is the person's index.
PERSON_DIR = re.compile(r"person_(\d+)")


def is_image_result(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but ``person_<k>/`` folders of result files (a photo's
    result; False for what cannot be listed)."""
    try:
        for entry in folder.iterdir():
            if not (entry.is_dir() and not entry.is_symlink() and PERSON_DIR.fullmatch(entry.name)):
                return False
            if any(f.name not in RESULT_FILES or not f.is_file() or not _ours(f) for f in entry.iterdir()):
                return False
    except OSError:
        return False
    return True


def _ours(path: Path) -> bool:
    """Whether a file of :data:`RESULT_FILES`' names is wbcap's: an ``--export`` file
    (``output.glb``, ``output.trc``, ``output_angles.csv``...) only with wbcap's marks
    (:func:`wbcap.io.run_folder.written_by_wbcap`; a user's own ``output.trc`` in a person's folder
    was replaced by a rerun: a break-it review)."""
    from wbcap.io.run_folder import TRACK_ENDINGS, written_by_wbcap

    exported = any(path.name == f"output{ending}" for ending in TRACK_ENDINGS.values())
    return not exported or written_by_wbcap(path)
