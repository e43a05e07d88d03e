"""Catalog search (lookalike.catalog.search): one path, stored local features, a readable order.

Real photos (scikit-image samples, the DEV groups), real weights.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.ingest import add_uploads
from lookalike.catalog.catalog import Catalog
from lookalike.catalog.search import FEATURES_FILE, FeatureStore, rerank_head, search_id, search_image, verified_tier
from lookalike.embed import EmbedderPool
from lookalike.geometry import (
    QueryFeatures,
    STORED_COARSE,
    STORED_FINE,
    check_copy,
    decide_tier,
    features_for,
    match_features,
    local_features,
    pack_features,
    rerank_key,
    unpack_features,
)
from lookalike.imaging import load_image
from lookalike.quality.evaluation import group_metrics_from_similarity, load_groups, rerank_similarity


def _edited(path, box_frac: float, side: int, *, mirror: bool = False) -> bytes:
    """A crop of the photo, resized (maybe mirrored) and re-encoded: an edited copy."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    dx, dy = int(w * (1 - box_frac) / 2), int(h * (1 - box_frac) / 2)
    img = img.crop((dx, dy, w - dx, h - dy))
    if mirror:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def _catalog(cat_settings, embedder, sample_photos, rerank: int, name: str) -> tuple[Catalog, EmbedderPool]:
    settings = cat_settings.model_copy(update={"search_rerank_top": rerank})
    pool = EmbedderPool(settings)
    pool._items[pool.key(None, None)] = embedder  # reuse the session's loaded model
    catalog = Catalog(name, settings)
    uploads = [(p.name, p.read_bytes()) for p in sample_photos.values()]
    uploads.append(("chelsea-copy.jpg", _edited(sample_photos["chelsea"], 0.8, 300)))
    uploads.append(("coffee-copy.jpg", _edited(sample_photos["coffee"], 0.9, 256)))
    added, errors = add_uploads(catalog, uploads, pool)
    assert not errors and len(added) == 8
    return catalog, pool


def test_search_orders_by_rank_score_and_says_why(cat_settings, embedder, sample_photos):
    query = _edited(sample_photos["chelsea"], 0.7, 280)
    plain, plain_pool = _catalog(cat_settings, embedder, sample_photos, 0, "plain")
    ranked, pool = _catalog(cat_settings, embedder, sample_photos, 50, "ranked")
    try:
        by_cosine = search_image(plain, query, 8, pool=plain_pool)
        reranked = search_image(ranked, query, 8, pool=pool)
        assert by_cosine.order == "cosine" and by_cosine.reranked == 0
        assert [r.cosine for r in by_cosine.results] == sorted((r.cosine for r in by_cosine.results), reverse=True)
        assert not any(r.verified for r in by_cosine.results)
        assert reranked.order == "rank_score" and reranked.reranked == 8
        assert {r.record.filename for r in by_cosine.results} == {r.record.filename for r in reranked.results}
        keys = [r.rank_score for r in reranked.results]
        assert keys == sorted(keys, reverse=True), keys
        for hit in reranked.results:  # each hit carries what ordered it
            if hit.verified:
                assert hit.rank_score == pytest.approx(rerank_key(hit.cosine, hit.inliers))
            as_json = hit.to_dict()
            assert {"rank_score", "inliers", "verified", "cosine", "score", "verdict"} <= set(as_json)
        assert {reranked.results[0].record.filename, reranked.results[1].record.filename} == \
            {"chelsea.jpg", "chelsea-copy.jpg"}
        assert reranked.results[0].verified and reranked.results[0].inliers > 10
        assert reranked.results[0].verdict == "near_duplicate"
        # k smaller than the re-ranked head: the head of the same order, cut after re-ranking
        assert search_image(ranked, query, 1, pool=pool).results[0].record.id == reranked.results[0].record.id
        # by id: the image itself left out, the rest ordered the same way
        first = reranked.results[0].record.id
        by_id = search_id(ranked, first, 3, pool=pool)
        assert first not in {r.record.id for r in by_id.results} and by_id.order == "rank_score"
    finally:
        plain.close()
        ranked.close()


def test_features_are_stored_once_and_rebuilt_when_lost(cat_settings, embedder, sample_photos):
    query = _edited(sample_photos["coffee"], 0.8, 300)
    catalog, pool = _catalog(cat_settings, embedder, sample_photos, 50, "durable")
    try:
        first = search_image(catalog, query, 5, pool=pool)
        count, total = catalog.features.stats()
        assert count == 8 and 10_000 < total / count < 60_000  # every hit's features, stored compactly
        blob = catalog.features.get_many([(first.results[0].record.id, first.results[0].record.content_hash)])
        assert len(blob) == 1
        again = search_image(catalog, query, 5, pool=pool)
        assert [r.record.id for r in again.results] == [r.record.id for r in first.results]
        catalog.remove([first.results[-1].record.id])
        assert catalog.features.stats()[0] == 7
    finally:
        catalog.close()
    path = catalog.root / FEATURES_FILE
    path.write_bytes(b"this is not a database")  # lost or damaged: only a cache
    for suffix in ("-wal", "-shm"):
        (catalog.root / f"{FEATURES_FILE}{suffix}").unlink(missing_ok=True)
    settings = cat_settings.model_copy(update={"search_rerank_top": 50})
    with Catalog("durable", settings, create=False) as reopened:
        rebuilt = search_image(reopened, query, 4, pool=pool)
        assert [r.record.id for r in rebuilt.results] == [r.record.id for r in first.results][:4]
        assert [r.inliers for r in rebuilt.results] == [r.inliers for r in first.results][:4]
        assert reopened.features.stats()[0] == 7


def test_features_blob_round_trips(sample_photos):
    image = load_image(sample_photos["astronaut"])
    blob = features_for(image)
    stored = unpack_features(blob)
    assert 0 < len(stored.fine) <= STORED_FINE
    assert stored.gray.shape == (192, 192)  # half of MAX_SIDE: the dense check's grey image
    assert stored._coarse is None  # not stored: made from the grey when a tier check needs it
    coarse = stored.coarse
    assert 0 < len(coarse) <= STORED_COARSE and stored.coarse is coarse  # made once, then kept
    again = unpack_features(pack_features(stored))  # coarse corners, once made, can be stored too
    assert np.array_equal(again.coarse.descriptors, coarse.descriptors)
    assert np.allclose(again.coarse.xy, coarse.xy, atol=1 / 32)
    assert np.array_equal(again.fine.descriptors, stored.fine.descriptors)
    assert np.allclose(again.fine.xy, stored.fine.xy, atol=1 / 32)
    with pytest.raises(ValueError, match="version"):
        unpack_features(b"LKF1" + blob[4:])  # the older format is recomputed, never misread


def test_feature_store_recomputes_rows_of_an_older_format(tmp_path, sample_photos):
    blob = features_for(load_image(sample_photos["chelsea"]))
    store = FeatureStore(tmp_path / FEATURES_FILE)
    try:
        store.put_many([(1, "a", blob), (2, "b", b"LKF1" + blob[4:])])
        assert store.ids().tolist() == [1]
        assert list(store.get_many([(1, "a"), (2, "b")])) == [1]
    finally:
        store.close()


def test_feature_store_keeps_recent_features_unpacked_and_forgets_deleted_ones(tmp_path, sample_photos):
    """Searches read a hit's features from memory after the first time (the same object, with
    what a tier check decoded), at most ``recent`` of them; a deleted or re-hashed image is never
    served from memory."""
    blobs = {name: features_for(load_image(path)) for name, path in sample_photos.items()}
    keys = [(i, f"hash-{name}") for i, name in enumerate(blobs, 1)]
    store = FeatureStore(tmp_path / FEATURES_FILE, recent=3)
    try:
        store.put_many([(i, digest, blobs[digest[5:]]) for i, digest in keys])
        first = store.unpacked(keys[:3])
        assert sorted(first) == [1, 2, 3]
        first[1].gray  # noqa: B018 - decoded once, then kept with the features
        again = store.unpacked(keys[:3])
        assert all(again[i] is first[i] for i in (1, 2, 3))
        assert again[1]._gray is not None
        store.unpacked(keys[:1])  # 1 used last
        store.unpacked(keys[3:5])  # two more: the two least recently used (2, 3) leave memory
        after = store.unpacked(keys[:3])
        assert after[1] is first[1] and after[2] is not first[2]
        assert np.array_equal(after[2].fine.descriptors, first[2].fine.descriptors)  # read again, same data
        store.delete([1])
        assert 1 not in store.unpacked(keys[:1])
        assert store.unpacked([(2, "another-hash")]) == {}  # re-indexed content: not the old features
    finally:
        store.close()


def test_pruned_rerank_gives_the_full_orders_head(sample_photos):
    images = [load_image(p) for p in sample_photos.values()]
    query = QueryFeatures(load_image(_edited(sample_photos["chelsea"], 0.8, 300)))
    stored = [unpack_features(features_for(image)) for image in images]
    cosines = [0.5, 0.45, 0.4, 0.35, 0.3, 0.25]
    full = rerank_head(query, stored, cosines, keep=len(stored))
    head = rerank_head(query, stored, cosines, keep=2)
    assert full.order[:2] == head.order[:2]
    assert all(full.keys[i] == head.keys[i] for i in head.order[:2])
    assert all(n is not None for n in full.inliers)
    chelsea = list(sample_photos).index("chelsea")
    assert full.order[0] == chelsea and full.inliers[chelsea] > 10


def test_search_tier_check_decides_as_compare_does(cat_settings, settings, sample_photos):
    """Copies (cropped, mirrored, shrunk) and other photos: the stored-features check gives the
    tier the full check of /v1/compare gives."""
    from lookalike.similarity import thresholds_for

    thresholds = thresholds_for("tf_efficientnet_lite0", 224, settings)
    score = (thresholds.near_duplicate + 1.0) / 2.0 + 0.02  # a near-duplicate score: every try runs
    originals = {name: load_image(path) for name, path in sample_photos.items()}
    queries = {
        "chelsea crop": (load_image(_edited(sample_photos["chelsea"], 0.8, 300)), "chelsea"),
        "coffee mirror": (load_image(_edited(sample_photos["coffee"], 0.9, 256, mirror=True)), "coffee"),
        "astronaut small": (load_image(_edited(sample_photos["astronaut"], 1.0, 160)), "astronaut"),
    }
    seen = set()
    for query_image, source in queries.values():
        query = QueryFeatures(query_image)
        full_query = local_features(query_image, with_mirror=False)
        for name, image in originals.items():
            ours = decide_tier(score, thresholds, check_copy(query, unpack_features(features_for(image))))
            assert verified_tier(query, unpack_features(features_for(image)), score, thresholds) == ours
            theirs = decide_tier(score, thresholds, match_features(full_query, local_features(image)))
            assert ours == theirs, (source, name, ours, theirs)
            seen.add((name == source, ours.value))
    assert seen == {(True, "near_duplicate"), (False, "similar")}


def test_features_file_survives_kill_9_mid_write(tmp_path, sample_photos):
    """A writer killed while committing feature rows leaves whole rows or none."""
    blob = features_for(load_image(sample_photos["chelsea"]))
    (tmp_path / "blob").write_bytes(blob)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from lookalike.catalog.search import FeatureStore
        store = FeatureStore(Path({str(tmp_path / FEATURES_FILE)!r}))
        blob = Path({str(tmp_path / "blob")!r}).read_bytes()
        i = 0
        print("ready", flush=True)
        while True:
            store.put_many((i + j, "hash", blob) for j in range(50))
            i += 50
    """)], stdout=subprocess.PIPE, env={**os.environ})
    assert writer.stdout.readline().strip() == b"ready"
    import time

    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    store = FeatureStore(tmp_path / FEATURES_FILE)
    try:
        ids = store.ids()
        assert len(ids) > 0 and len(ids) % 50 == 0  # whole transactions only
        rows = store.get_many([(int(i), "hash") for i in ids[-60:]])
        assert all(unpack_features(b).fine.descriptors.shape == (len(unpack_features(blob).fine), 32)
                   for b in rows.values())
    finally:
        store.close()


def test_rerank_lifts_retrieval_of_other_views_on_dev_groups(embedder, dev_data):
    """Measured on the DEV view groups: the re-ranked head finds other views of an object more often,
    ordered exactly as catalog search orders it."""
    groups = load_groups(dev_data / "groups.csv")
    vectors = embedder.encode(groups.paths)
    similarity = (vectors @ vectors.T + 1.0) / 2.0
    plain = group_metrics_from_similarity(similarity, groups.groups)
    reranked = group_metrics_from_similarity(
        rerank_similarity(similarity, groups.paths, 50, embedder.limits, embedder.preprocessing.decode_side),
        groups.groups)  # decoded as the embedder (and so search) decodes
    assert reranked.recall_at_1 >= plain.recall_at_1 + 0.04, (plain, reranked)
    assert reranked.recall_at_4 >= plain.recall_at_4 + 0.04, (plain, reranked)
    assert reranked.map > plain.map + 0.04, (plain, reranked)
    assert np.isclose(rerank_similarity(similarity, groups.paths, 0), similarity).all()


def test_hamming_table_matchers_match_as_opencv_and_faiss_do(sample_photos):
    """The re-rank's and the tier check's matchers (distance tables + NumPy minima) give exactly
    the ratio-tested matches of OpenCV's brute-force matcher (per hit) and of FAISS's binary k-NN
    (all hits at once, the previous matcher), on real photos and an edited copy."""
    import faiss

    from lookalike.geometry import RATIO_TEST, _gray, _orb_set, forward_ratio_matches, ratio_matches, reverse_ratio_matches

    images = [load_image(p) for p in sample_photos.values()] + [load_image(_edited(sample_photos["chelsea"], 0.8, 300))]
    sets = [_orb_set(_gray(image), 300) for image in images]
    query = _orb_set(_gray(images[-1]), 500)
    for candidate in sets:
        ours, opencv = forward_ratio_matches(query, candidate), ratio_matches(query, [candidate])[0]
        assert np.array_equal(ours.query, opencv.query) and np.array_equal(ours.candidate, opencv.candidate)
    index = faiss.IndexBinaryFlat(256)
    index.add(query.descriptors)
    reverse = reverse_ratio_matches(query, sets)
    for candidate, ours in zip(sets, reverse):
        distances, nearest = index.search(candidate.descriptors, 2)
        rows = np.flatnonzero(distances[:, 0] < RATIO_TEST * distances[:, 1])
        assert np.array_equal(ours.candidate, rows) and np.array_equal(ours.query, nearest[rows, 0])
    chelsea = list(sample_photos).index("chelsea")
    assert reverse[chelsea].bound > 20 > max(m.bound for i, m in enumerate(reverse[:-1]) if i != chelsea)


def test_a_hits_coarse_corners_are_made_once_then_read_from_the_store(cat_settings, embedder, sample_photos):
    """A tier check that needs the second look makes the hit's coarse corners from its stored grey;
    search stores them after the answer, and the next search reads them instead of making them."""
    from lookalike.catalog import search as search_module
    from lookalike.geometry import STORED_COARSE

    catalog, pool = _catalog(cat_settings, embedder, sample_photos, 50, "coarse")
    try:
        records = list(catalog.meta.records())
        stored = search_module.stored_features(catalog, records)
        assert all(f is not None and f._coarse is None for f in stored)  # indexed: fine corners + grey only
        hit = stored[0]
        search_module._keep_made_coarse(catalog, [(records[0], hit)])  # nothing made yet: nothing written
        search_module._WRITER.submit(lambda: None).result()
        assert search_module.stored_features(catalog, records[:1])[0]._coarse is None
        coarse = hit.coarse  # what a second look makes
        search_module._keep_made_coarse(catalog, [(records[0], hit)])
        search_module._WRITER.submit(lambda: None).result()  # the write runs after the answer, in order
        again = search_module.stored_features(catalog, records[:1])[0]
        assert again._coarse is not None and not again.coarse_made and 0 < len(again.coarse) <= STORED_COARSE
        assert np.array_equal(again.coarse.descriptors, coarse.descriptors)
        assert np.array_equal(again.fine.descriptors, hit.fine.descriptors) and again.gray_jpeg == hit.gray_jpeg
    finally:
        catalog.close()
