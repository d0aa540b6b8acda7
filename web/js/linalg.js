// Small dense linear algebra for the clustering: a symmetric eigen solver (Householder reduction to
// tridiagonal form, then the implicit QL method), the polar factor of a small square matrix, and
// column-pivoted QR pivots. Matrices are Float64Arrays in row-major order.

/**
 * Eigenvalues (ascending) and eigenvectors of the symmetric n x n matrix `a` (not changed).
 * Returns {values: Float64Array(n), vectors: Float64Array(n*n)} where row i of `vectors` is the
 * unit eigenvector of values[i].
 */
export function symmetricEigen(a, n) {
  const v = Float64Array.from(a); // v[i*n+j]; becomes the accumulated transformation
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return { values: d, vectors: v };
  reduceToTridiagonal(v, d, e, n);
  const w = transpose(v, n); // rows of w are the columns of v: rotations touch contiguous rows
  tridiagonalQL(w, d, e, n);
  const order = Array.from(d.keys()).sort((i, j) => d[i] - d[j] || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((source, target) => {
    values[target] = d[source];
    vectors.set(w.subarray(source * n, source * n + n), target * n);
  });
  return { values, vectors };
}

function transpose(m, n) {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = m[i * n + j];
  return t;
}

// Householder reduction of the symmetric matrix in v to tridiagonal form: diagonal in d,
// sub-diagonal in e[1..n-1]; v becomes the orthogonal matrix of the reduction.
function reduceToTridiagonal(v, d, e, n) {
  for (let j = 0; j < n; j++) d[j] = v[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
        v[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        v[j * n + i] = f;
        g = e[j] + v[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[k * n + j] * d[k];
          e[k] += v[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) v[k * n + j] -= f * e[k] + g * d[k];
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    v[(n - 1) * n + i] = v[i * n + i];
    v[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[k * n + i + 1] * v[k * n + j];
        for (let k = 0; k <= i; k++) v[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) v[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[(n - 1) * n + j];
    v[(n - 1) * n + j] = 0;
  }
  v[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

// Implicit QL iterations on the tridiagonal matrix (d, e); w holds the eigenvectors as rows.
function tridiagonalQL(w, d, e, n) {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let largest = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    largest = Math.max(largest, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * largest) m++;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 60) throw new Error("eigenvalues did not converge");
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          const rowI = i * n;
          const rowNext = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            const upper = w[rowNext + k];
            w[rowNext + k] = s * w[rowI + k] + c * upper;
            w[rowI + k] = c * w[rowI + k] - s * upper;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * largest);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/** U V^T of the singular value decomposition U S V^T of the k x k matrix `a` (its polar factor). */
export function polarFactor(a, k) {
  // a^T a = V S^2 V^T, so U V^T = a V S^-1 V^T.
  const gram = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      let total = 0;
      for (let r = 0; r < k; r++) total += a[r * k + i] * a[r * k + j];
      gram[i * k + j] = total;
    }
  }
  const { values, vectors } = symmetricEigen(gram, k);
  const top = Math.sqrt(Math.max(values[k - 1], 0));
  // inverse square root of a^T a on its range; a (numerically) zero direction is left out
  const inverseRoot = new Float64Array(k * k);
  for (let m = 0; m < k; m++) {
    const sigma = Math.sqrt(Math.max(values[m], 0));
    if (!(sigma > top * 1e-12)) continue;
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) inverseRoot[i * k + j] += (vectors[m * k + i] * vectors[m * k + j]) / sigma;
    }
  }
  return multiply(a, inverseRoot, k, k, k);
}

/** Product of a (rows x inner) and b (inner x cols), row-major. */
export function multiply(a, b, rows, inner, cols) {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < inner; r++) {
      const value = a[i * inner + r];
      if (value === 0) continue;
      for (let j = 0; j < cols; j++) out[i * cols + j] += value * b[r * cols + j];
    }
  }
  return out;
}

/**
 * The first `count` column pivots of a QR factorisation with column pivoting of the matrix whose
 * columns are the n rows of `rows` (n x k, row-major): each step takes the column with the largest
 * norm left after removing the directions of the columns already taken (the first one on a tie).
 */
export function pivotedQRColumns(rows, n, k, count) {
  const residual = Float64Array.from(rows);
  const taken = new Uint8Array(n);
  const pivots = [];
  for (let step = 0; step < Math.min(count, n); step++) {
    let best = -1;
    let bestNorm = -1;
    for (let c = 0; c < n; c++) {
      if (taken[c]) continue;
      let norm = 0;
      for (let j = 0; j < k; j++) norm += residual[c * k + j] ** 2;
      if (norm > bestNorm) {
        bestNorm = norm;
        best = c;
      }
    }
    pivots.push(best);
    taken[best] = 1;
    const length = Math.sqrt(bestNorm);
    if (!(length > 0)) continue;
    const q = new Float64Array(k);
    for (let j = 0; j < k; j++) q[j] = residual[best * k + j] / length;
    for (let c = 0; c < n; c++) {
      let dot = 0;
      for (let j = 0; j < k; j++) dot += q[j] * residual[c * k + j];
      for (let j = 0; j < k; j++) residual[c * k + j] -= dot * q[j];
    }
  }
  return pivots;
}

/**
 * The `count` smallest eigenvalues (ascending) of the symmetric n x n matrix `a` and their unit
 * eigenvectors (rows of `vectors`, count x n), for large n: Householder reduction to tridiagonal
 * form (row-wise, on the lower triangle), eigenvalues by bisection on Sturm counts, eigenvectors of
 * the tridiagonal matrix by inverse iteration (orthogonalised within groups of close eigenvalues),
 * carried back through the reflections. About (4/3) n^3 operations instead of the 3-4 times more
 * of the full solver.
 */
export function smallestEigenpairs(a, n, count) {
  count = Math.min(count, n);
  if (n <= 2) {
    const full = symmetricEigen(a, n);
    return { values: full.values.slice(0, count), vectors: full.vectors.slice(0, count * n) };
  }
  const { d, e, reflections } = householderTridiagonal(a, n);
  let scale = 0;
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(d[i]) + Math.abs(e[i]) + Math.abs(e[i + 1] || 0));
  scale = scale || 1;
  const values = new Float64Array(count);
  for (let m = 0; m < count; m++) values[m] = bisectEigenvalue(d, e, n, m, scale);
  const vectors = new Float64Array(count * n);
  const groupTolerance = 1e-3 * scale;
  for (let m = 0; m < count; m++) {
    let first = m;
    while (first > 0 && values[m] - values[first - 1] < groupTolerance) first--;
    const y = tridiagonalInverseIteration(d, e, n, values[m], scale, vectors, first, m, m);
    vectors.set(y, m * n);
  }
  for (let m = 0; m < count; m++) applyReflections(reflections, vectors.subarray(m * n, (m + 1) * n), n);
  return { values, vectors };
}

// Householder tridiagonalisation of a symmetric matrix (only its lower triangle is read): diagonal d,
// off-diagonal e (e[i] couples i-1 and i, e[0] = 0), and the unit reflection vectors (reflection k
// acts on coordinates k+1..n-1).
function householderTridiagonal(a, n) {
  const b = Float64Array.from(a);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const reflections = [];
  for (let k = 0; k < n - 2; k++) {
    const m = n - k - 1; // size of the trailing block
    const v = new Float64Array(m);
    let norm = 0;
    for (let i = 0; i < m; i++) {
      v[i] = b[(k + 1 + i) * n + k]; // column k below the diagonal
      norm += v[i] * v[i];
    }
    norm = Math.sqrt(norm);
    d[k] = b[k * n + k];
    if (norm === 0) {
      e[k + 1] = 0;
      reflections.push(null);
      continue;
    }
    const alpha = v[0] > 0 ? -norm : norm;
    e[k + 1] = alpha;
    v[0] -= alpha;
    let vNorm = 0;
    for (let i = 0; i < m; i++) vNorm += v[i] * v[i];
    vNorm = Math.sqrt(vNorm);
    if (vNorm === 0) {
      reflections.push(null);
      continue;
    }
    for (let i = 0; i < m; i++) v[i] /= vNorm;
    // p = B v over the trailing block, reading its lower triangle row by row
    const p = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const row = (k + 1 + i) * n + k + 1;
      let total = 0;
      const vi = v[i];
      for (let j = 0; j < i; j++) {
        const value = b[row + j];
        total += value * v[j];
        p[j] += value * vi;
      }
      p[i] += total + b[row + i] * vi;
    }
    let c = 0;
    for (let i = 0; i < m; i++) c += v[i] * p[i];
    for (let i = 0; i < m; i++) p[i] -= c * v[i]; // q = p - (v.p) v; B <- B - 2 (v q^T + q v^T)
    for (let i = 0; i < m; i++) {
      const row = (k + 1 + i) * n + k + 1;
      const vi = 2 * v[i];
      const qi = 2 * p[i];
      for (let j = 0; j <= i; j++) b[row + j] -= vi * p[j] + qi * v[j];
    }
    reflections.push(v);
  }
  d[n - 2] = b[(n - 2) * n + n - 2];
  d[n - 1] = b[(n - 1) * n + n - 1];
  e[n - 1] = b[(n - 1) * n + n - 2];
  e[0] = 0;
  return { d, e, reflections };
}

// Number of eigenvalues of the tridiagonal matrix (d, e) below x (Sturm sequence).
function sturmCount(d, e, n, x, tiny) {
  let count = 0;
  let q = 1;
  for (let i = 0; i < n; i++) {
    q = d[i] - x - (i > 0 ? (e[i] * e[i]) / q : 0);
    if (Math.abs(q) < tiny) q = -tiny;
    if (q < 0) count++;
  }
  return count;
}

// The m-th smallest eigenvalue (0-based) of the tridiagonal matrix by bisection.
function bisectEigenvalue(d, e, n, m, scale) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const radius = Math.abs(e[i]) + (i + 1 < n ? Math.abs(e[i + 1]) : 0);
    lo = Math.min(lo, d[i] - radius);
    hi = Math.max(hi, d[i] + radius);
  }
  const tiny = Number.MIN_VALUE ** 0.5 * scale;
  for (let step = 0; step < 200 && hi - lo > 2 * Number.EPSILON * scale; step++) {
    const middle = (lo + hi) / 2;
    if (middle === lo || middle === hi) break;
    if (sturmCount(d, e, n, middle, tiny) > m) hi = middle;
    else lo = middle;
  }
  return (lo + hi) / 2;
}

// A unit eigenvector of the tridiagonal matrix for the eigenvalue `lambda` by inverse iteration,
// kept orthogonal to rows first..before-1 of `previous` (eigenvectors of close eigenvalues).
function tridiagonalInverseIteration(d, e, n, lambda, scale, previous, first, before, seed) {
  // Gaussian elimination with partial pivoting of T - lambda I: rows become (u0, u1, u2) on the
  // diagonal and the two super-diagonals; l holds the multipliers, swapped marks row exchanges.
  const u0 = new Float64Array(n);
  const u1 = new Float64Array(n);
  const u2 = new Float64Array(n);
  const l = new Float64Array(n);
  const swapped = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    u0[i] = d[i] - lambda;
    u1[i] = i + 1 < n ? e[i + 1] : 0;
  }
  const tiny = Number.EPSILON * scale;
  for (let i = 0; i < n - 1; i++) {
    const below = e[i + 1];
    if (Math.abs(u0[i]) >= Math.abs(below)) {
      if (u0[i] === 0) u0[i] = tiny;
      l[i] = below / u0[i];
      u0[i + 1] -= l[i] * u1[i];
      u1[i + 1] -= l[i] * u2[i];
    } else {
      l[i] = u0[i] / below;
      swapped[i] = 1;
      const nextDiagonal = u0[i + 1];
      const nextSuper = u1[i + 1];
      u0[i] = below;
      u0[i + 1] = u1[i] - l[i] * nextDiagonal;
      u1[i] = nextDiagonal;
      u1[i + 1] = -l[i] * nextSuper;
      u2[i] = nextSuper;
    }
  }
  if (u0[n - 1] === 0) u0[n - 1] = tiny;
  for (let i = 0; i < n; i++) if (Math.abs(u0[i]) < tiny) u0[i] = u0[i] < 0 ? -tiny : tiny;

  let x = new Float64Array(n);
  let state = 12345 + 7919 * seed;
  for (let i = 0; i < n; i++) {
    state = (state * 16807) % 2147483647;
    x[i] = 0.5 + state / 2147483647;
  }
  for (let iteration = 0; iteration < 6; iteration++) {
    // forward: the row operations, then back substitution
    for (let i = 0; i < n - 1; i++) {
      if (swapped[i]) {
        const top = x[i];
        x[i] = x[i + 1];
        x[i + 1] = top - l[i] * x[i];
      } else {
        x[i + 1] -= l[i] * x[i];
      }
    }
    for (let i = n - 1; i >= 0; i--) {
      let value = x[i];
      if (i + 1 < n) value -= u1[i] * x[i + 1];
      if (i + 2 < n) value -= u2[i] * x[i + 2];
      x[i] = value / u0[i];
    }
    for (let r = first; r < before; r++) {
      let dotValue = 0;
      for (let i = 0; i < n; i++) dotValue += previous[r * n + i] * x[i];
      for (let i = 0; i < n; i++) x[i] -= dotValue * previous[r * n + i];
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += x[i] * x[i];
    norm = Math.sqrt(norm);
    if (!(norm > 0) || !Number.isFinite(norm)) throw new Error("inverse iteration failed");
    x = x.map((value) => value / norm);
  }
  return x;
}

// y <- H_0 H_1 ... H_{n-3} y: the tridiagonal's eigenvector carried back to the original matrix.
function applyReflections(reflections, y, n) {
  for (let k = reflections.length - 1; k >= 0; k--) {
    const v = reflections[k];
    if (!v) continue;
    let dotValue = 0;
    for (let i = 0; i < v.length; i++) dotValue += v[i] * y[k + 1 + i];
    dotValue *= 2;
    for (let i = 0; i < v.length; i++) y[k + 1 + i] -= dotValue * v[i];
  }
}
