"""Optional detector: torchvision's Faster R-CNN (COCO 'person' class).

Used only when torchvision imports *and* its COCO weights are already in torch's hub cache
(wbcap never downloads at run time). The only torchvision wheel for torch 2.13 is a CUDA build
that cannot be imported on CPU-only machines, which is why HOG is the embedded default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from wbcap.detect.base import FRCNN_SCORES, Detection, check_probability_threshold

log = logging.getLogger(__name__)

WEIGHTS_FILE = "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"


def weights_path() -> Path:
    """Where torchvision keeps the COCO Faster R-CNN weights (torch hub cache)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def available() -> tuple[bool, str]:
    """(usable, reason): torchvision imports and the weights are present."""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        return False, f"torchvision does not import ({type(exc).__name__})"
    path = weights_path()
    if not path.is_file():
        return False, f"no Faster R-CNN weights at {path}"
    return True, str(path)


class TorchvisionDetector:
    """Faster R-CNN ResNet-50 FPN person detector (score threshold, min height fraction)."""

    name = "torchvision"

    def __init__(self, device="cpu", score_threshold: float = 0.5, min_height_frac: float = 0.0, max_people: int | None = None):
        """Raises InputError for ``score_threshold`` outside [0, 1] (its scores are probabilities)."""
        check_probability_threshold(score_threshold, FRCNN_SCORES)
        import torch
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
        self.model = model.eval().to(device)
        self.device = device
        self.score_threshold = score_threshold
        self.min_height_frac = min_height_frac
        self.max_people = max_people

    def __call__(self, image: np.ndarray) -> list[Detection]:
        import torch

        with torch.inference_mode():
            # Upload the uint8 frame (a quarter of the bytes) and convert on the device.
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float().div_(255)
            out = self.model([x])[0]
            # One device -> host copy: boxes (K, 4), label, score.
            rows = torch.cat((out["boxes"], out["labels"][:, None].to(out["boxes"].dtype), out["scores"][:, None]), 1)
            rows = rows.cpu().tolist()
        h = image.shape[0]
        dets = []
        for x1, y1, x2, y2, label, score in rows:
            if label != 1 or score < self.score_threshold or (y2 - y1) < self.min_height_frac * h:
                continue
            dets.append(Detection((x1, y1, x2 - x1, y2 - y1), float(score)))
        dets.sort(key=lambda d: -d.score)
        return dets[: self.max_people] if self.max_people else dets
