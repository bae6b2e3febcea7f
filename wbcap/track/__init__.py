"""track stage of wbcap: linking per-frame person boxes into tracks (iou_tracker)."""
