"""Tiny widths of every reference model (mesc.models), for tests that need each one's real
outputs fast: the model zoo's contract tests and the policy graphs run on their logits."""

TINY_DEPTH = (1, 1, 1, 1, 1, 1, 1)
TINY = {
    "drn50-fcn": dict(base_width=8, blocks=(1, 1, 1, 1), num_exits=3),
    "drn50-deeplab": dict(base_width=8, blocks=(1, 1, 1, 1), num_exits=3, head_channels=16),
    "mbv2-fcn": dict(width_mult=0.25, depth=TINY_DEPTH),
    "mbv2-deeplab": dict(width_mult=0.25, depth=TINY_DEPTH),
    "hrnet18": dict(width=4, stem_width=8, stage1_blocks=1, modules=(1, 1, 1), branch_blocks=1),
    "unet-skip": dict(base_width=4),
    "mit-b0": dict(channels=(8, 16, 24, 32), heads=(1, 2, 3, 4), decoder_dim=16),
    "demo": dict(width_mult=0.25, depth=TINY_DEPTH, pretrained=False),
}
# models whose early points carry candidate heads (nested outputs): tests/models/test_candidates.py (export side: tests/exporters/test_candidate_export.py)
CANDIDATE_MODELS = {"demo-search"}


def tiny(name, seed=0, **overrides):
    """The tiny ``name`` (eval mode), its weights drawn from torch's generator at ``seed``."""
    import torch

    import mesc.models as models

    torch.manual_seed(seed)
    return models.create(name, **{**TINY[name], **overrides}).eval()
