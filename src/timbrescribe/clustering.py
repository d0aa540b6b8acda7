"""Notes -> instrument tracks: cluster per-note timbre vectors into K groups, K given or estimated
(DESIGN.md §5). numpy and scipy (scikit-learn only for the silhouette method): this runs on the
onnxruntime path.

Input: one unit-length vector per note (pooled embeddings, see pooling.py, or any descriptor) and,
optionally, the notes themselves: with ``pitch_weight`` > 0 each vector gains one coordinate,
pitch_weight x (pitch - 60) / 12, before it is normalised again, so that notes an octave apart
look a little less alike (instruments keep to their registers); with ``solo_polyphony`` > 0 a
recording whose notes hardly ever overlap (two or more sound during less than that share of the
time any note sounds) is one melodic line, so one instrument, whatever the timbre vectors say.
Affinity between notes i, j: exp((cos(i, j) - 1) / width), 1 for identical directions.
- K given: spectral clustering of that affinity into K groups (one eigendecomposition serves
  every K tried, see Spectrum).
- K estimated: the method and its parameters in ClusterSettings (chosen on validation data by
  scripts/tune_separation.py): "eigengap" takes the K with the largest gap between consecutive
  eigenvalues of the normalised Laplacian, "merge" cuts a linkage tree of cosine distances
  (``merge_linkage``: average, or complete, where two groups are as far apart as their farthest
  notes) at a distance threshold (so a solo comes out as one group) and counts the groups holding
  at least ``min_group_share`` of the notes (a few odd notes are not an instrument), "silhouette" picks the K in 2..max
  whose spectral clustering has the best silhouette, or 1 when none reaches a floor.
Long files: when there are more than ``max_spectral_notes`` notes, an evenly spread subset is
clustered and every note joins the group whose mean vector it is closest to, so time and memory
stay bounded (the affinity of n notes is n x n).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from timbrescribe.notes import Note
from timbrescribe.settings_file import JsonSettings

ESTIMATION_METHODS = ("eigengap", "merge", "silhouette")
MERGE_LINKAGES = ("average", "complete")


@dataclass(frozen=True)
class ClusterSettings(JsonSettings):
    """How notes are grouped. Tuned values ship in weights/clustering.json."""

    kind = "clustering settings"

    affinity_width: float = 0.25  # width of exp((cos - 1) / width)
    method: str = "merge"  # how K is estimated, one of ESTIMATION_METHODS
    merge_threshold: float = 0.5  # "merge": cosine distance at which groups stop merging
    merge_linkage: str = "average"  # "merge": distance between groups, one of MERGE_LINKAGES
    min_group_share: float = 0.05  # "merge": smallest share of the notes that counts as a group
    silhouette_floor: float = 0.1  # "silhouette": below this best silhouette, answer K = 1
    max_instruments: int = 6  # largest K the estimate may return
    max_spectral_notes: int = 1500  # cluster at most this many notes directly (see module doc)
    confidence_temperature: float = 0.1  # softmax temperature of the per-note confidence
    pitch_weight: float = 0.0  # weight of the register coordinate (see module doc); 0 = timbre only
    solo_polyphony: float = 0.0  # K estimated: below this polyphony_share, one instrument; 0 = off

    def __post_init__(self):
        if self.method not in ESTIMATION_METHODS:
            raise ValueError(f"method must be one of {ESTIMATION_METHODS}, got {self.method!r}")
        if self.merge_linkage not in MERGE_LINKAGES:
            raise ValueError(f"merge_linkage must be one of {MERGE_LINKAGES}, got {self.merge_linkage!r}")
        for name in ("affinity_width", "confidence_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pitch_weight < 0:
            raise ValueError(f"pitch_weight must not be negative, got {self.pitch_weight}")
        if not 0.0 <= self.solo_polyphony <= 1.0:
            raise ValueError(f"solo_polyphony must lie in [0, 1], got {self.solo_polyphony}")
        if self.max_instruments < 1 or self.max_spectral_notes < 2:
            raise ValueError("max_instruments must be >= 1 and max_spectral_notes >= 2")


@dataclass(frozen=True)
class Clustering:
    """Group of every note (0..k-1; every group in 0..k-1 may be empty only when the caller asked
    for more groups than there are notes), the number of groups, and each note's confidence: the
    softmax weight (over the groups' mean vectors) of its own group."""

    labels: np.ndarray
    k: int
    confidence: np.ndarray


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def affinity(vectors: np.ndarray, width: float) -> np.ndarray:
    """(n, n) affinity exp((cos - 1) / width) of unit vectors (n, d)."""
    cosine = np.clip(vectors @ vectors.T, -1.0, 1.0)
    return np.exp((cosine - 1.0) / width)


class Spectrum:
    """The spectral embedding of unit vectors (n, d), computed once for every K: the smallest
    eigenvalues of the symmetric normalised Laplacian of the affinity (self loops left out) and
    their eigenvectors scaled by 1 / sqrt(degree). Spectral clustering into K groups reads the
    first K columns (labels); the eigengap reads the values."""

    def __init__(self, vectors: np.ndarray, width: float, count: int) -> None:
        from scipy.linalg import eigh

        matrix = affinity(vectors, width)
        np.fill_diagonal(matrix, 0.0)
        scale = 1.0 / np.sqrt(np.maximum(matrix.sum(axis=1), 1e-12))
        laplacian = np.eye(len(vectors)) - scale[:, None] * matrix * scale[None, :]
        count = min(count, len(vectors))
        self.values, eigenvectors = eigh(laplacian, subset_by_index=(0, count - 1))
        self.maps = eigenvectors * scale[:, None]

    def labels(self, k: int) -> np.ndarray:
        """Groups 0..k-1 from the first k columns by column-pivoted QR (Damle, Minden and Ying,
        2019: no random start, unlike k-means)."""
        from scipy.linalg import qr, svd

        if k == 1:
            return np.zeros(len(self.maps), np.int64)
        maps = self.maps[:, :k]
        _, _, pivots = qr(maps.T, pivoting=True, mode="economic")
        left, _, right = svd(maps[pivots[:k]].T)
        return np.argmax(np.abs(maps @ (left @ right)), axis=1).astype(np.int64)


def estimate_k(vectors: np.ndarray, settings: ClusterSettings, spectrum: Spectrum | None = None) -> int:
    """Number of instruments among unit vectors (n, d) by ``settings.method`` (1..max_instruments).
    ``spectrum``: the vectors' Spectrum with at least max_instruments + 1 columns, if already made."""
    n = len(vectors)
    top = min(settings.max_instruments, n)
    if top <= 1:
        return 1
    if settings.method == "merge":
        from scipy.cluster.hierarchy import fcluster, linkage

        from scipy.spatial.distance import squareform

        # cosine distances of unit vectors; a zero vector (a note with no sounding cell) is at
        # distance 1 from everything instead of undefined
        distance = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method=settings.merge_linkage)
        labels = fcluster(tree, t=settings.merge_threshold, criterion="distance")
        sizes = np.bincount(labels)
        groups = int((sizes >= max(settings.min_group_share * n, 1)).sum())
        return int(min(max(groups, 1), top))
    spectrum = spectrum or Spectrum(vectors, settings.affinity_width, top + 1)
    if settings.method == "eigengap":
        gaps = np.diff(spectrum.values)[:top]
        return int(np.argmax(gaps)) + 1
    from sklearn.metrics import silhouette_score  # imported only when needed

    best_k, best_score = 1, settings.silhouette_floor
    for k in range(2, top + 1):
        labels = spectrum.labels(k)
        if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= n:
            continue
        score = silhouette_score(vectors, labels, metric="cosine")
        if score > best_score:
            best_k, best_score = k, score
    return best_k


def _subset(n: int, size: int) -> np.ndarray:
    """Indices of ``size`` notes spread evenly over 0..n-1 (all of them when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


def with_register(vectors: np.ndarray, notes: Sequence[Note] | None, weight: float) -> np.ndarray:
    """Unit vectors with the register coordinate appended (see module doc); unchanged when
    ``weight`` is 0 or no notes are given."""
    if not weight or notes is None:
        return vectors
    pitches = np.array([note.pitch for note in notes], dtype=np.float64)
    return np.hstack([_unit(vectors), weight * (pitches[:, None] - 60.0) / 12.0])


def polyphony_share(notes: Sequence[Note]) -> float:
    """Share of the time during which any note sounds that two or more sound (0 without notes).
    Notes that only touch (one ends where the next begins) do not overlap."""
    if not notes:
        return 0.0
    times = np.array([note.onset for note in notes] + [note.offset for note in notes])
    steps = np.repeat([1, -1], len(notes))
    order = np.lexsort((steps, times))  # at equal times, ends before starts
    sounding = np.cumsum(steps[order])[:-1]
    durations = np.diff(times[order])
    return float(durations[sounding >= 2].sum() / max(durations[sounding >= 1].sum(), 1e-12))


def cluster_notes(
    vectors: np.ndarray, k: int | None = None, settings: ClusterSettings | None = None,
    notes: Sequence[Note] | None = None,
) -> Clustering:
    """Group n notes by their timbre vectors (n, d) into ``k`` groups, or an estimated number
    when ``k`` is None; the ``notes`` themselves (n of them) serve settings.pitch_weight and
    settings.solo_polyphony. Defined for every n: no notes give no labels in ``k`` (default 1)
    empty groups; fewer notes than ``k`` give one note per group and the remaining groups empty;
    k = 1 puts every note in group 0."""
    settings = settings or ClusterSettings()
    if k is not None and k < 1:
        raise ValueError(f"the number of groups must be at least 1, got {k}")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected one vector per note, shape (n, d), got {vectors.shape}")
    if notes is not None and len(notes) != len(vectors):
        raise ValueError(f"got {len(notes)} notes for {len(vectors)} vectors")
    vectors = _unit(with_register(vectors, notes, settings.pitch_weight))
    n = len(vectors)
    if n == 0:
        return Clustering(np.zeros(0, np.int64), k or 1, np.zeros(0))
    sample = _subset(n, settings.max_spectral_notes)
    chosen = vectors[sample]
    melodic_line_rule = k is None and settings.solo_polyphony > 0 and notes is not None
    if melodic_line_rule and polyphony_share(notes) < settings.solo_polyphony:
        k = 1
    spectrum = None
    if k is None:
        if settings.method != "merge" and len(chosen) > 1:
            spectrum = Spectrum(chosen, settings.affinity_width, settings.max_instruments + 1)
        k = estimate_k(chosen, settings, spectrum)
    if n <= k:
        labels = np.arange(n, dtype=np.int64)
        return Clustering(labels, k, np.ones(n))
    if k == 1:
        sample_labels = np.zeros(len(chosen), np.int64)
    else:
        if spectrum is None or spectrum.maps.shape[1] < k:
            spectrum = Spectrum(chosen, settings.affinity_width, k)
        sample_labels = spectrum.labels(k)
    centroids = _unit(np.stack([chosen[sample_labels == g].sum(axis=0) for g in range(k)]))
    if len(sample) == n:
        labels = sample_labels
    else:
        labels = np.argmax(vectors @ centroids.T, axis=1).astype(np.int64)
    return Clustering(labels, k, _confidence(vectors, centroids, labels, settings.confidence_temperature))


def _confidence(vectors: np.ndarray, centroids: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax weight of each note's own group over cos(note, group mean) / temperature."""
    logits = vectors @ centroids.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights[np.arange(len(labels)), labels]
