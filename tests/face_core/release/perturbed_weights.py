"""Weights moved away from their initialisation, so that a tensor lost or zeroed on the way shows in the outputs."""

import torch


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` in eval mode with N(0, 0.05) added to every parameter (non-zero biases, non-unit norms)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()
