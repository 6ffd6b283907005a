"""Testing as in section 7: top-k metrics, multi-crop and ensemble evaluation."""

from googlenet.evaluate.metrics import topk_correct

__all__ = ["topk_correct"]
