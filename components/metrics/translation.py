"""What the translation families are for, measured on the held-out pairs:

    pix2pix   psnr, ssim (torchmetrics; images in [0, 1]), l1 of outputs vs targets, and the same for
              bicubic upsampling of the input (bicubic_*), the baseline super-resolution must beat
    cyclegan  label preservation: the target domain's classifier agrees with the source image's label,
              A → B (label_preservation_ab) and B → A (label_preservation_ba), label_preservation = the
              lower; cycle_l1 = mean of ‖F(G(a)) - a‖₁ and ‖G(F(b)) - b‖₁ (per pixel, [0, 1] units)

Generation metrics of the outputs (FID… under the evaluator) come from metrics/scores.py as for any model."""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from components.sampling import translate

Tensor = torch.Tensor


def _unit(x: Tensor) -> Tensor:
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def image_quality(outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """Mean per-image PSNR (dB) and SSIM, and mean L1, of images in [-1, 1] scored in [0, 1]."""
    out, tgt = _unit(outputs), _unit(targets)
    side = min(out.shape[-2:])
    kernel = min(11, side - (1 - side % 2))  # SSIM's Gaussian window (11 by default) must fit the image, odd
    psnr = peak_signal_noise_ratio(out, tgt, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {"psnr": float(psnr.clamp(max=100.0).mean()),  # identical images: ∞ dB, capped
            "ssim": float(structural_similarity_index_measure(out, tgt, data_range=1.0, kernel_size=kernel)),
            "l1": float((out - tgt).abs().mean())}


def paired_scores(outputs: Tensor, targets: Tensor, inputs: Tensor) -> dict[str, float]:
    """pix2pix: the outputs' quality, bicubic upsampling's, and the PSNR gain over bicubic."""
    from components.models.translation import to_size

    ours = image_quality(outputs, targets)
    base = image_quality(to_size(inputs, tuple(targets.shape[-2:])).clamp(-1, 1), targets)
    return {**ours, **{f"bicubic_{k}": v for k, v in base.items()}, "psnr_gain": ours["psnr"] - base["psnr"]}


@torch.no_grad()
def cycle_scores(g: torch.nn.Module, a: Tensor, b: Tensor, fake_b: Tensor, labels_b: Tensor, classifier_a,
                 ab_accuracy: float) -> dict[str, float]:
    """cyclegan: B → A label preservation under domain A's classifier, both cycle errors, and the
    summary label_preservation (the lower direction). fake_b = G(a) and A → B's accuracy are the
    caller's, who scored them already."""
    fake_a = translate(g, b, reverse=True)
    ba = float((classifier_a.logits(fake_a).argmax(1) == labels_b).float().mean())
    rec_a, rec_b = translate(g, fake_b, reverse=True), translate(g, fake_a)
    cycle = 0.5 * (float((_unit(rec_a) - _unit(a)).abs().mean()) + float((_unit(rec_b) - _unit(b)).abs().mean()))
    return {"label_preservation_ab": ab_accuracy, "label_preservation_ba": ba,
            "label_preservation": min(ab_accuracy, ba), "cycle_l1": cycle}
