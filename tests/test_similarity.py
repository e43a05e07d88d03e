"""similarity.py: the seed's score, tiers, the yes/no rule, and where thresholds come from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.config import Settings
from lookalike.similarity import Thresholds, Tier, cosine, normalized_score, seed_threshold, thresholds_for


def test_normalized_score_is_the_seeds_mapping_for_floats_and_arrays():
    assert normalized_score(1.0) == 1.0 and normalized_score(-1.0) == 0.0 and normalized_score(0.0) == 0.5
    assert normalized_score(1.0000002) == 1.0  # float noise past 1 is clipped, never a score > 1
    np.testing.assert_allclose(normalized_score(np.array([-1.0, 0.6, 1.0])), [0.0, 0.8, 1.0])


def test_cosine_ignores_length_and_survives_zero_vectors():
    a = np.array([3.0, 4.0])
    assert cosine(a, 10 * a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, np.zeros(2)) == 0.0


def test_tiers_and_the_yes_no_rule():
    t = Thresholds(match=0.85, near_duplicate=0.9, similar=0.8, source="test")
    assert [t.tier(s) for s in (0.95, 0.85, 0.5)] == [Tier.NEAR_DUPLICATE, Tier.SIMILAR, Tier.DIFFERENT]
    assert t.tier(0.1, exact=True) is Tier.EXACT
    assert t.is_match(0.86, Tier.SIMILAR) and not t.is_match(0.84, Tier.SIMILAR)
    assert t.is_match(0.5, Tier.NEAR_DUPLICATE)  # a verified copy is a match whatever its score


def test_every_threshold_names_its_source(tmp_path):
    shipped = thresholds_for("tf_efficientnet_lite0", 224, Settings(calibration_file=None))
    assert shipped.source.startswith("shipped calibration") and 0.5 < shipped.match < 1.0
    unknown = thresholds_for("resnet18", 999, Settings(calibration_file=None))
    assert (unknown.match, unknown.source) == (0.80, "default threshold (seed's 0.80)")
    configured = thresholds_for("resnet18", 999, Settings(calibration_file=None, threshold=0.7))
    assert (configured.match, configured.source) == (0.7, "config threshold")
    per_model = thresholds_for("tf_efficientnet_lite0", 224, Settings(model_thresholds={"tf_efficientnet_lite0": 0.93}))
    assert (per_model.match, per_model.source) == (0.93, "config model_thresholds.tf_efficientnet_lite0")
    own = tmp_path / "calibration.json"
    own.write_text(json.dumps({"models": {"tf_efficientnet_lite0@224": {"match": 0.91, "near_duplicate": 0.95,
                                                                          "similar": 0.83}}}))
    mine = thresholds_for("tf_efficientnet_lite0", 224, Settings(calibration_file=own))
    assert (mine.match, mine.near_duplicate, mine.similar) == (0.91, 0.95, 0.83)
    assert str(own) in mine.source


def test_the_seed_endpoint_keeps_its_080_line():
    assert seed_threshold("resnet18", Settings()) == 0.80
