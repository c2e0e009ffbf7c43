"""The linear probe recovers a planted linear signal, reports chance on noise, and picks C and thresholds on validation."""

from __future__ import annotations

import math

import torch
from synthetic_sets import ShardSets

from data_shards.loaders import LoaderConfig, eval_loader, normalize_pixels
from face_core.evaluation.linear_probe import ProbeData, fit_linear_probe, fit_logistic, read_labelled
from face_core.evaluation.metrics import au_f1
from face_core.model.config import ViTConfig
from face_core.model.vit import VisionTransformer

AUS, CLASSES, DIM = 4, 3, 16


def planted(samples: int, seed: int, signal: float = 1.0) -> ProbeData:
    """Features whose first dimensions carry the labels linearly (``signal`` 0: pure noise); some labels missing."""
    generator = torch.Generator().manual_seed(seed)
    aus = (torch.rand(samples, AUS, generator=generator) < torch.tensor([0.1, 0.3, 0.5, 0.2])).float()
    expression = torch.randint(0, CLASSES, (samples,), generator=generator)
    features = torch.randn(samples, DIM, generator=generator) * 5.0 + 3.0  # off-centre, off-scale: standardisation matters
    features[:, :AUS] += signal * 20.0 * (aus - 0.5)
    features[:, AUS : AUS + CLASSES] += signal * 20.0 * torch.nn.functional.one_hot(expression, CLASSES)
    aus[::7, 1] = math.nan  # an AU label missing
    expression[::5] = -1  # an expression missing
    return ProbeData(features, aus, expression, CLASSES)


def test_planted_signal_is_recovered_and_noise_is_not() -> None:
    probe = fit_linear_probe(planted(400, 0), planted(200, 1))
    found = probe.evaluate(planted(300, 2))
    assert found["au_f1"] > 0.9 and found["au_f1_valthr"] > 0.9
    assert found["uar"] > 0.9 and found["war"] > 0.9
    noise = fit_linear_probe(planted(400, 0, signal=0.0), planted(200, 1, signal=0.0)).evaluate(planted(300, 2, signal=0.0))
    assert noise["uar"] < 0.5  # chance 1/3
    assert noise["au_f1"] < 0.7  # all-active scores 2p / (1 + p): 0.18 ... 0.67 for these prevalences


def test_c_and_thresholds_come_from_validation() -> None:
    train, val = planted(300, 0, signal=0.15), planted(300, 1, signal=0.15)
    probe = fit_linear_probe(train, val, c_grid=(1.0, 0.001))  # any order: fitted ascending
    assert set(probe.au_c) <= {0.001, 1.0} and probe.expression_c in (0.001, 1.0)
    on_val = probe.evaluate(val)
    assert on_val["au_f1_valthr"] >= on_val["au_f1"] - 1e-6  # val thresholds maximise F1 on val (0.5 is on the grid)
    # the chosen C of an AU is the one with the best validation F1 at 0.5
    mean, std = train.features.mean(0), train.features.std(0)
    for c in (0.001, 1.0):
        weight, bias = fit_logistic((train.features - mean) / std, train.aus, train.expression, CLASSES, c)
        probs = torch.sigmoid((val.features - mean) / std @ weight[:, :AUS] + bias[:AUS])
        alone = au_f1(probs, val.aus, (0.5,))[0]
        chosen = au_f1(probe.au_probs(val.features), val.aus, (0.5,))[0]
        assert (chosen >= alone - 1e-3).all()


def test_strong_l2_shrinks_the_weights() -> None:
    data = planted(200, 0)
    x = (data.features - data.features.mean(0)) / data.features.std(0)
    weak, _ = fit_logistic(x, data.aus, data.expression, CLASSES, c=10.0)
    strong, _ = fit_logistic(x, data.aus, data.expression, CLASSES, c=1e-4)
    assert strong.norm() < 0.1 * weak.norm()


def test_labelled_features_of_an_encoder_on_shards(synthetic_shards: ShardSets) -> None:
    shards = synthetic_shards("tiny")
    encoder = VisionTransformer(ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)).train()
    loader = eval_loader(LoaderConfig(shards=[shards["images-train"]], batch_size=16, num_workers=0, rank=0, world_size=1))
    data = read_labelled(loader, max_samples=20).features(encoder, "cpu")
    assert encoder.training  # mode restored
    assert data.features.shape == (20, 32) and data.aus.shape[0] == 20 and data.num_classes == len(loader.class_names)
    assert data.aus.shape[1] == len(loader.au_ids) and data.expression.dtype == torch.long
    with torch.no_grad():
        first = next(iter(loader))["pixels"][:1]
        torch.testing.assert_close(data.features[:1], encoder.eval()(normalize_pixels(first)))


def test_fits_from_inference_mode() -> None:
    """Lightning's validation and test loops run under inference mode; the fitter turns it off for itself."""
    with torch.inference_mode():
        train, val = planted(200, 0), planted(100, 1)
        found = fit_linear_probe(train, val).evaluate(val)
    assert found["uar"] > 0.9
