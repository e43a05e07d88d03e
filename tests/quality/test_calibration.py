"""Thresholds picked from labelled scores, written, and read back by the service."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.quality.calibration import (
    calibrate_scores,
    precision_threshold,
    read_calibration_file,
    read_entry,
    write_calibration,
)
from lookalike.quality.evaluation import EvalDataError
from lookalike.similarity import SHIPPED_CALIBRATION, Tier, thresholds_for


def _scores():
    rng = np.random.default_rng(1)
    pos = np.clip(rng.normal(0.93, 0.03, 200), 0, 1)
    neg = np.clip(rng.normal(0.65, 0.06, 200), 0, 1)
    return np.r_[pos, neg], np.r_[np.ones(200, int), np.zeros(200, int)]


def test_best_f1_and_target_precision():
    scores, labels = _scores()
    best = calibrate_scores("m", 224, scores, labels)
    strict = calibrate_scores("m", 224, scores, labels, target_precision=1.0)
    assert best.method == "best F1" and 0.75 < best.match < 0.9
    assert strict.match >= best.match - 1e-9 and strict.metrics["precision_at_threshold"] == 1.0
    assert best.near_duplicate == best.match and best.similar <= best.match
    assert precision_threshold(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 1.0) == pytest.approx(0.85)


def test_similar_line_comes_from_other_shots():
    scores, labels = _scores()
    same_group = np.clip(np.random.default_rng(2).normal(0.82, 0.04, 100), 0, 1)
    c = calibrate_scores("m", 224, scores, labels, same_group_scores=same_group)
    assert 0.65 < c.similar < c.match
    assert "same-group" in c.metrics["similar_method"]


def test_one_class_is_refused():
    with pytest.raises(EvalDataError):
        calibrate_scores("m", 224, [0.9, 0.8], [1, 1])


def test_round_trip_and_the_service_reads_it(tmp_path, settings):
    scores, labels = _scores()
    path = tmp_path / "cal.json"
    write_calibration(path, [calibrate_scores("tf_efficientnet_lite0", 224, scores, labels)])
    write_calibration(path, [calibrate_scores("mobilenetv2_100", 224, scores, labels, target_precision=0.99)])
    data = read_calibration_file(path)
    assert set(data["models"]) == {"mobilenetv2_100@224", "tf_efficientnet_lite0@224"}  # merged, not replaced
    entry = data["models"]["tf_efficientnet_lite0@224"]
    assert {"match", "near_duplicate", "similar", "method", "metrics", "n_pairs", "created_at"} <= set(entry)
    back = read_entry(path, "tf_efficientnet_lite0", 224)
    assert back is not None and back.match == entry["match"] and back.curves
    service = thresholds_for("tf_efficientnet_lite0", 224, settings.model_copy(update={"calibration_file": path}))
    assert service.match == entry["match"] and str(path) in service.source
    assert service.tier(entry["match"] + 0.01) is Tier.NEAR_DUPLICATE


def test_shipped_defaults_cover_every_model_with_weights(settings):
    from importlib import resources

    from lookalike.models.status import all_status

    shipped = json.loads(resources.files("lookalike").joinpath(SHIPPED_CALIBRATION).read_text())["models"]
    for status in all_status(settings):
        if status.available:
            key = f"{status.spec.name}@{status.spec.default_size}"
            assert key in shipped, f"no shipped calibration for {key}"
            entry = shipped[key]
            assert 0.5 < entry["similar"] <= entry["near_duplicate"] <= 1.0
            t = thresholds_for(status.spec.name, status.spec.default_size, settings)
            assert t.match == entry["match"] and "shipped" in t.source


def test_pick_copy_lines_sets_the_check_band_where_it_pays():
    """Copies above 0.95 and copies at 0.72-0.78 that the check verifies; other shots (weighing 5) at
    0.75-0.92 that it rejects, random pairs at 0.40-0.45: the sure line goes just above the highest
    shot, the candidate line down to the checked copies, above the random pairs."""
    from lookalike.quality.calibration import pick_copy_lines

    scores = [0.97, 0.96, 0.98, 0.72, 0.78, 0.75, 0.80, 0.85, 0.92, 0.40, 0.45]
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    says = [True, True, True, True, True, False, False, False, False, False, False]
    weights = [1, 1, 1, 1, 1, 5, 5, 5, 5, 1, 1]
    candidate, sure, f1, checked = pick_copy_lines(scores, labels, says, weights)
    assert sure == 0.925 and 0.45 < candidate <= 0.72
    assert f1 == 1.0 and 0 < checked < 1
    with pytest.raises(Exception, match="copies"):
        pick_copy_lines([0.9, 0.8], [1, 1], [True, True])
