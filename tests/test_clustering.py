"""Clustering notes into instruments: known groups, K estimation, edge cases, large inputs."""
import dataclasses

import numpy as np
import pytest

from timbrescribe.clustering import ESTIMATION_METHODS, ClusterSettings, cluster_notes, estimate_k, polyphony_share
from timbrescribe.notes import Note
from timbrescribe.training.timbre import note_accuracy


def _groups(k: int, per_group: int = 40, noise: float = 0.25, dim: int = 12, seed: int = 0):
    """Unit vectors scattered around k random directions, and their true group."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(k), per_group)
    vectors = centres[truth] + noise * rng.standard_normal((len(truth), dim)) / np.sqrt(dim)
    order = rng.permutation(len(truth))
    return vectors[order], truth[order]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_known_k_recovers_the_groups(k):
    vectors, truth = _groups(k, seed=k)
    result = cluster_notes(vectors, k)
    assert result.k == k and result.labels.shape == truth.shape
    assert note_accuracy(result.labels, truth) == 1.0
    assert np.all((result.confidence > 0.5) & (result.confidence <= 1.0))


@pytest.mark.parametrize("method", ESTIMATION_METHODS)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_k_is_estimated_for_one_to_four_groups(method, k):
    vectors, truth = _groups(k, noise=0.2, seed=10 + k)
    settings = ClusterSettings(method=method, affinity_width=0.2, merge_threshold=0.5, silhouette_floor=0.3)
    assert estimate_k(vectors, settings) == k
    result = cluster_notes(vectors, None, settings)
    assert result.k == k and note_accuracy(result.labels, truth) == 1.0


def test_a_solo_with_spread_timbre_is_one_group():
    # one instrument whose notes vary (register, dynamics) but stay within one cone
    vectors, _ = _groups(1, per_group=200, noise=0.6, seed=3)
    assert cluster_notes(vectors, None, ClusterSettings(method="merge", merge_threshold=0.5)).k == 1


def test_edge_cases_have_defined_results():
    empty = cluster_notes(np.zeros((0, 12)), None)
    assert empty.labels.shape == (0,) and empty.k == 1
    assert cluster_notes(np.zeros((0, 12)), 3).k == 3

    one = cluster_notes(np.ones((1, 12)), None)
    assert one.k == 1 and one.labels.tolist() == [0] and one.confidence.tolist() == [1.0]

    few = cluster_notes(np.eye(12)[:2], 4)  # fewer notes than groups: one note each, two empty
    assert few.k == 4 and sorted(few.labels.tolist()) == [0, 1]

    vectors, _ = _groups(3)
    single = cluster_notes(vectors, 1)
    assert single.k == 1 and not single.labels.any()

    with pytest.raises(ValueError, match="at least 1"):
        cluster_notes(vectors, 0)


def test_many_notes_are_clustered_through_a_bounded_subset():
    vectors, truth = _groups(3, per_group=2000, seed=5)
    settings = ClusterSettings(max_spectral_notes=300)
    result = cluster_notes(vectors, None, dataclasses.replace(settings, method="merge", merge_threshold=0.5))
    assert result.k == 3 and result.labels.shape == (6000,)
    assert note_accuracy(result.labels, truth) > 0.99


def test_settings_are_checked():
    with pytest.raises(ValueError, match="method"):
        ClusterSettings(method="guess")
    with pytest.raises(ValueError, match="unknown"):
        ClusterSettings.from_dict({"widht": 1.0})
    assert ClusterSettings.from_dict(ClusterSettings().to_dict()) == ClusterSettings()


def test_complete_linkage_splits_a_chain_that_average_linkage_joins():
    # 13 unit vectors 10 degrees apart along an arc of 120 degrees: neighbours are close, the ends
    # far apart. Cut at cosine distance 0.4, average linkage gives 2 groups, complete linkage
    # (groups as far apart as their farthest members) 3.
    angles = np.radians(np.arange(0, 121, 10))
    arc = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    settings = ClusterSettings(method="merge", merge_threshold=0.4, min_group_share=0.0)
    assert estimate_k(arc, settings) == 2
    assert estimate_k(arc, dataclasses.replace(settings, merge_linkage="complete")) == 3
    with pytest.raises(ValueError, match="merge_linkage must be one of"):
        ClusterSettings(merge_linkage="single")


def test_pitch_weight_adds_the_register_and_zero_ignores_it():
    vectors, _ = _groups(1, per_group=60, noise=0.05, seed=8)  # one timbre ...
    pitches = np.r_[np.full(30, 40), np.full(30, 84)]  # ... in two registers far apart
    notes = [Note(0.5 * i, 0.5 * i + 0.4, int(p)) for i, p in enumerate(pitches)]
    apart = cluster_notes(vectors, 2, ClusterSettings(pitch_weight=1.0), notes)
    assert note_accuracy(apart.labels, (pitches > 60).astype(int)) == 1.0
    assert cluster_notes(vectors, None, ClusterSettings(pitch_weight=0.0), notes).k == 1
    with pytest.raises(ValueError, match="notes"):
        cluster_notes(vectors, 2, ClusterSettings(), notes[:5])


def test_polyphony_share_counts_overlapping_time_only():
    assert polyphony_share([]) == 0.0
    line = [Note(0.0, 1.0, 60), Note(1.0, 2.0, 62), Note(3.0, 4.0, 64)]  # touching, then a rest
    assert polyphony_share(line) == 0.0
    # 0-2 one note, 1-2 a second one over it, 2-3 the second alone: overlap 1 s of 3 s sounding
    assert polyphony_share([Note(0.0, 2.0, 60), Note(1.0, 3.0, 67)]) == pytest.approx(1 / 3)
    assert polyphony_share([Note(0.0, 1.0, 60), Note(0.0, 1.0, 64), Note(0.0, 1.0, 67)]) == 1.0


def test_a_melodic_line_is_one_instrument_whatever_the_vectors():
    vectors, _ = _groups(2, per_group=40, noise=0.05, seed=9)  # two clear timbres ...
    line = [Note(0.3 * i, 0.3 * i + 0.25, 60) for i in range(len(vectors))]  # ... one note at a time
    chords = [Note(0.3 * (i // 2), 0.3 * (i // 2) + 0.25, 60 + i % 2) for i in range(len(vectors))]
    settings = ClusterSettings(method="merge", merge_threshold=0.5, solo_polyphony=0.2)
    assert cluster_notes(vectors, None, settings, line).k == 1
    assert cluster_notes(vectors, None, settings, chords).k == 2  # notes overlap: timbre decides
    assert cluster_notes(vectors, 2, settings, line).k == 2  # a given K is kept
    assert cluster_notes(vectors, None, dataclasses.replace(settings, solo_polyphony=0.0), line).k == 2
    with pytest.raises(ValueError, match="solo_polyphony"):
        ClusterSettings(solo_polyphony=1.5)


def test_a_few_odd_notes_do_not_count_as_an_instrument():
    rng = np.random.default_rng(21)
    truth = np.r_[np.zeros(100, int), np.ones(100, int), np.full(3, 2)]  # the third: 3 of 203 notes
    vectors = np.eye(12)[truth] + 0.05 * rng.standard_normal((len(truth), 12))
    assert estimate_k(vectors, ClusterSettings(method="merge", min_group_share=0.0)) == 3
    assert estimate_k(vectors, ClusterSettings(method="merge", min_group_share=0.05)) == 2


def test_notes_without_a_vector_do_not_break_estimation():
    vectors, _ = _groups(2, seed=30)
    vectors[:3] = 0.0  # notes whose cells were all below the floor
    for method in ESTIMATION_METHODS:
        result = cluster_notes(vectors, None, ClusterSettings(method=method))
        assert result.labels.shape == (len(vectors),) and 1 <= result.k <= 6


def test_spectrum_labels_equal_scikit_learns_spectral_clustering():
    from sklearn.cluster import SpectralClustering

    from timbrescribe.clustering import Spectrum, _unit, affinity

    for k, seed in ((2, 1), (3, 2), (4, 3)):
        vectors, _ = _groups(k, per_group=30, noise=0.8, seed=seed)  # groups that overlap
        vectors = _unit(vectors)
        reference = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                       random_state=0).fit_predict(affinity(vectors, 0.25))
        ours = Spectrum(vectors, 0.25, 7).labels(k)  # more columns than needed: only k are read
        assert note_accuracy(ours, reference) == 1.0
