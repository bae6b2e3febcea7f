"""Environment checks behind ``wbcap doctor``."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_checks(body_models: str | None = None) -> list[Check]:
    """Every check, in display order (body models, checkpoints, renderer, CUDA, libraries)."""
    from wbcap.body.model_files import find_body_model
    from wbcap.errors import WbcapError
    from wbcap.paths import body_models_dir
    from wbcap.weights import find_checkpoint, manifest

    checks: list[Check] = []
    for gender in ("neutral", "male", "female"):
        try:
            path = find_body_model(gender, body_models)
            checks.append(Check(f"SMPL-X {gender}", True, str(path)))
        except WbcapError as exc:
            checks.append(
                Check(
                    f"SMPL-X {gender}",
                    False,
                    str(exc).split(";")[0],
                    f"register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models and put "
                    f"SMPLX_{gender.upper()}.npz in {body_models_dir() / 'smplx'} (or set WBCAP_BODY_MODELS)",
                    optional=gender != "neutral",
                )
            )
    for entry in manifest().values():
        try:
            path = find_checkpoint(name=entry.name)
            checks.append(Check(f"checkpoint {entry.name}", True, str(path)))
        except WbcapError:
            checks.append(
                Check(
                    f"checkpoint {entry.name}",
                    False,
                    f"{entry.file} not found",
                    f"download {entry.file} from {entry.source}, then `wbcap weights import {entry.name} FILE`",
                    optional=not entry.default,
                )
            )
    from wbcap.export.render import render_backend

    backend = render_backend()
    checks.append(
        Check(
            "renderer",
            backend != "software",
            backend,
            "for faster, nicer renders install EGL or OSMesa (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri, or libosmesa6)",
            optional=True,
        )
    )
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA", True, f"{torch.cuda.device_count()} device(s): {names}"))
    else:
        checks.append(Check("CUDA", False, f"not available (torch {torch.__version__}); running on CPU",
                            "optional: install a CUDA build of torch 2.13 on a machine with an NVIDIA GPU", optional=True))
    import cv2

    has_hog = hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")
    checks.append(Check("HOG detector", has_hog, f"opencv {cv2.__version__}",
                        "" if has_hog else "pip install 'opencv-python-headless<5' (5.x removed HOG)"))
    libs = ", ".join(f"{p} {_version(p)}" for p in ("torch", "smplx", "av", "trimesh", "pyrender", "numpy"))
    checks.append(Check("libraries", True, libs))
    return checks
