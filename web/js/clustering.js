// Notes -> instrument groups: a port of src/timbrescribe/clustering.py (cluster_notes and what it
// uses). Settings come from weights/clustering.json (the same keys as ClusterSettings).
//
// Vectors are arrays of per-note Float32Array/number arrays; everything is computed in float64.

import { pivotedQRColumns, polarFactor, smallestEigenpairs } from "./linalg.js";

function unitRows(vectors) {
  return vectors.map((vector) => {
    let norm = 0;
    for (const x of vector) norm += x * x;
    norm = Math.max(Math.sqrt(norm), 1e-12);
    return Float64Array.from(vector, (x) => x / norm);
  });
}

function dot(a, b) {
  let total = 0;
  for (let i = 0; i < a.length; i++) total += a[i] * b[i];
  return total;
}

/** Unit vectors with the register coordinate weight * (pitch - 60) / 12 appended (weight > 0). */
export function withRegister(vectors, notes, weight) {
  if (!weight || !notes) return vectors;
  return unitRows(vectors).map((vector, i) => Float64Array.from([...vector, (weight * (notes[i].pitch - 60)) / 12]));
}

/** Share of the sounding time during which two or more notes sound (0 without notes). */
export function polyphonyShare(notes) {
  if (!notes.length) return 0;
  const events = [];
  for (const note of notes) events.push([note.onset, 1], [note.offset, -1]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // at equal times, ends before starts
  let sounding = 0;
  let overlapping = 0;
  let any = 0;
  for (let i = 0; i < events.length - 1; i++) {
    sounding += events[i][1];
    const duration = events[i + 1][0] - events[i][0];
    if (sounding >= 2) overlapping += duration;
    if (sounding >= 1) any += duration;
  }
  return overlapping / Math.max(any, 1e-12);
}

function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Indices of `size` notes spread evenly over 0..n-1 (all when n <= size), as numpy's linspace. */
export function evenSubset(n, size) {
  if (n <= size) return Array.from({ length: n }, (_, i) => i);
  const step = (n - 1) / (size - 1);
  const picked = new Set();
  for (let i = 0; i < size; i++) picked.add(i === size - 1 ? n - 1 : roundHalfEven(i * step));
  return [...picked].sort((a, b) => a - b);
}

/** Spectral embedding: smallest eigenpairs of the normalised Laplacian of the affinity. */
export class Spectrum {
  constructor(vectors, width, count) {
    const n = vectors.length;
    const matrix = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const cosine = Math.min(1, Math.max(-1, dot(vectors[i], vectors[j])));
        const value = Math.exp((cosine - 1) / width);
        matrix[i * n + j] = value;
        matrix[j * n + i] = value;
      }
    }
    const scale = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let degree = 0;
      for (let j = 0; j < n; j++) degree += matrix[i * n + j];
      scale[i] = 1 / Math.sqrt(Math.max(degree, 1e-12));
    }
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) matrix[i * n + j] = (i === j ? 1 : 0) - scale[i] * matrix[i * n + j] * scale[j];
    }
    this.count = Math.min(count, n);
    const { values, vectors: eigenvectors } = smallestEigenpairs(matrix, n, this.count);
    this.values = values;
    // maps: n x count, column m = eigenvector m scaled by 1 / sqrt(degree)
    this.n = n;
    this.maps = new Float64Array(n * this.count);
    for (let m = 0; m < this.count; m++) {
      for (let i = 0; i < n; i++) this.maps[i * this.count + m] = eigenvectors[m * n + i] * scale[i];
    }
  }

  /** Groups 0..k-1 from the first k columns by column-pivoted QR and the polar factor. */
  labels(k) {
    const { n, count } = this;
    if (k === 1) return new Array(n).fill(0);
    const maps = new Float64Array(n * k);
    for (let i = 0; i < n; i++) for (let m = 0; m < k; m++) maps[i * k + m] = this.maps[i * count + m];
    const pivots = pivotedQRColumns(maps, n, k, k);
    // a = maps[pivots].T (k x k)
    const a = new Float64Array(k * k);
    pivots.forEach((row, j) => {
      for (let i = 0; i < k; i++) a[i * k + j] = maps[row * k + i];
    });
    const rotation = polarFactor(a, k);
    const labels = new Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestValue = -1;
      for (let g = 0; g < k; g++) {
        let total = 0;
        for (let m = 0; m < k; m++) total += maps[i * k + m] * rotation[m * k + g];
        if (Math.abs(total) > bestValue) {
          bestValue = Math.abs(total);
          best = g;
        }
      }
      labels[i] = best;
    }
    return labels;
  }
}

/**
 * Flat groups of a linkage tree over the distance matrix (n x n), cut at `threshold`: two items
 * share a group when the tree joins them at a distance of at most `threshold` (SciPy's fcluster
 * with the "distance" criterion). `method`: "average" or "complete" (a group's distance to another
 * is the mean, or the largest, of its items' distances). Built by the nearest-neighbour chain.
 * Returns group ids.
 */
export function linkageGroups(distance, n, threshold, method = "average") {
  if (method !== "average" && method !== "complete") throw new Error(`unknown linkage: ${method}`);
  const d = Float64Array.from(distance);
  const size = new Float64Array(n).fill(1);
  const alive = new Uint8Array(n).fill(1);
  const parent = Array.from({ length: n }, (_, i) => i);
  const find = (i) => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  const chain = [];
  for (let merges = 0; merges < n - 1; merges++) {
    if (!chain.length) chain.push(alive.indexOf(1));
    let x;
    let y;
    let best;
    for (;;) {
      x = chain[chain.length - 1];
      const previous = chain.length > 1 ? chain[chain.length - 2] : -1;
      best = Infinity;
      y = -1;
      if (previous >= 0) {
        y = previous;
        best = d[x * n + previous];
      }
      for (let i = 0; i < n; i++) {
        if (!alive[i] || i === x) continue;
        if (d[x * n + i] < best) {
          best = d[x * n + i];
          y = i;
        }
      }
      if (y === previous) break;
      chain.push(y);
    }
    chain.length -= 2;
    if (best <= threshold) parent[find(x)] = find(y);
    // merge x into y (Lance-Williams update)
    const sx = size[x];
    const sy = size[y];
    for (let i = 0; i < n; i++) {
      if (!alive[i] || i === x || i === y) continue;
      const value = method === "average"
        ? (sx * d[x * n + i] + sy * d[y * n + i]) / (sx + sy)
        : Math.max(d[x * n + i], d[y * n + i]);
      d[y * n + i] = value;
      d[i * n + y] = value;
    }
    alive[x] = 0;
    size[y] = sx + sy;
  }
  return Array.from({ length: n }, (_, i) => find(i));
}

function mergeCount(vectors, settings, top) {
  const n = vectors.length;
  const distance = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      distance[i * n + j] = i === j ? 0 : Math.min(2, Math.max(0, 1 - dot(vectors[i], vectors[j])));
    }
  }
  const groups = linkageGroups(distance, n, settings.merge_threshold, settings.merge_linkage);
  const sizes = new Map();
  for (const g of groups) sizes.set(g, (sizes.get(g) || 0) + 1);
  const minimum = Math.max(settings.min_group_share * n, 1);
  const counted = [...sizes.values()].filter((s) => s >= minimum).length;
  return Math.min(Math.max(counted, 1), top);
}

/** Mean silhouette of `labels` with cosine distances (as scikit-learn's silhouette_score). */
export function cosineSilhouette(vectors, labels) {
  const n = vectors.length;
  const norms = vectors.map((v) => Math.sqrt(dot(v, v)));
  const groupIds = [...new Set(labels)];
  const counts = new Map(groupIds.map((g) => [g, 0]));
  for (const g of labels) counts.set(g, counts.get(g) + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const sums = new Map(groupIds.map((g) => [g, 0]));
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const cosine = dot(vectors[i], vectors[j]) / (norms[i] * norms[j]);
      sums.set(labels[j], sums.get(labels[j]) + (1 - cosine));
    }
    const own = counts.get(labels[i]);
    if (own <= 1) continue; // silhouette 0
    const a = sums.get(labels[i]) / (own - 1);
    let b = Infinity;
    for (const g of groupIds) if (g !== labels[i]) b = Math.min(b, sums.get(g) / counts.get(g));
    total += (b - a) / Math.max(a, b);
  }
  return total / n;
}

/** Number of instruments among unit vectors by settings.method (1..max_instruments). */
export function estimateK(vectors, settings, spectrum = null) {
  const n = vectors.length;
  const top = Math.min(settings.max_instruments, n);
  if (top <= 1) return 1;
  if (settings.method === "merge") return mergeCount(vectors, settings, top);
  spectrum = spectrum || new Spectrum(vectors, settings.affinity_width, top + 1);
  if (settings.method === "eigengap") {
    let best = 0;
    for (let i = 0; i < Math.min(top, spectrum.values.length - 1); i++) {
      if (spectrum.values[i + 1] - spectrum.values[i] > spectrum.values[best + 1] - spectrum.values[best]) best = i;
    }
    return best + 1;
  }
  let bestK = 1;
  let bestScore = settings.silhouette_floor;
  for (let k = 2; k <= top; k++) {
    const labels = spectrum.labels(k);
    const distinct = new Set(labels).size;
    if (distinct < 2 || distinct >= n) continue;
    const score = cosineSilhouette(vectors, labels);
    if (score > bestScore) {
      bestK = k;
      bestScore = score;
    }
  }
  return bestK;
}

function confidences(vectors, centroids, labels, temperature) {
  return vectors.map((vector, i) => {
    const logits = centroids.map((c) => dot(vector, c) / temperature);
    const top = Math.max(...logits);
    const weights = logits.map((x) => Math.exp(x - top));
    const total = weights.reduce((s, w) => s + w, 0);
    return weights[labels[i]] / total;
  });
}

/**
 * Group notes by their timbre vectors into k groups, or an estimated number when k is null.
 * Returns {labels, k, confidence} like clustering.Clustering.
 */
export function clusterNotes(vectors, k, settings, notes = null) {
  if (k !== null && k < 1) throw new Error(`the number of groups must be at least 1, got ${k}`);
  if (notes && notes.length !== vectors.length) throw new Error(`got ${notes.length} notes for ${vectors.length} vectors`);
  const units = unitRows(withRegister(vectors, notes, settings.pitch_weight));
  const n = units.length;
  if (n === 0) return { labels: [], k: k || 1, confidence: [] };
  const sample = evenSubset(n, settings.max_spectral_notes);
  const chosen = sample.map((i) => units[i]);
  const melodicLineRule = k === null && settings.solo_polyphony > 0 && notes;
  if (melodicLineRule && polyphonyShare(notes) < settings.solo_polyphony) k = 1;
  let spectrum = null;
  if (k === null) {
    if (settings.method !== "merge" && chosen.length > 1) {
      spectrum = new Spectrum(chosen, settings.affinity_width, settings.max_instruments + 1);
    }
    k = estimateK(chosen, settings, spectrum);
  }
  if (n <= k) return { labels: Array.from({ length: n }, (_, i) => i), k, confidence: new Array(n).fill(1) };
  let sampleLabels;
  if (k === 1) sampleLabels = new Array(chosen.length).fill(0);
  else {
    if (!spectrum || spectrum.count < k) spectrum = new Spectrum(chosen, settings.affinity_width, k);
    sampleLabels = spectrum.labels(k);
  }
  const dim = chosen[0].length;
  const centroids = unitRows(
    Array.from({ length: k }, (_, g) => {
      const total = new Float64Array(dim);
      chosen.forEach((vector, i) => {
        if (sampleLabels[i] === g) for (let d = 0; d < dim; d++) total[d] += vector[d];
      });
      return total;
    }),
  );
  let labels = sampleLabels;
  if (sample.length !== n) {
    labels = units.map((vector) => {
      let best = 0;
      for (let g = 1; g < k; g++) if (dot(vector, centroids[g]) > dot(vector, centroids[best])) best = g;
      return best;
    });
  }
  return { labels, k, confidence: confidences(units, centroids, labels, settings.confidence_temperature) };
}
