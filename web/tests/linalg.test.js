// The eigen solvers: the partial one (large spectral clusterings) against the full one, on random and
// on degenerate matrices (several groups that do not touch: eigenvalue 0 several times).
import assert from "node:assert/strict";
import { test } from "node:test";

import { pivotedQRColumns, polarFactor, smallestEigenpairs, symmetricEigen } from "../js/linalg.js";

function random(seed) {
  let state = seed;
  return () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647 - 0.5;
  };
}

function randomSymmetric(n, seed) {
  const r = random(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const x = r();
      a[i * n + j] = x;
      a[j * n + i] = x;
    }
  }
  return a;
}

function assertEigenpairs(a, n, values, vectors, count) {
  for (let m = 0; m < count; m++) {
    for (let i = 0; i < n; i++) {
      let product = 0;
      for (let j = 0; j < n; j++) product += a[i * n + j] * vectors[m * n + j];
      assert.ok(Math.abs(product - values[m] * vectors[m * n + i]) < 1e-10, `residual of pair ${m}`);
    }
    for (let q = 0; q <= m; q++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += vectors[m * n + i] * vectors[q * n + i];
      assert.ok(Math.abs(dot - (q === m ? 1 : 0)) < 1e-10, `orthonormality of ${m}, ${q}`);
    }
  }
}

test("full solver: eigenpairs of random symmetric matrices, ascending", () => {
  for (const n of [1, 2, 5, 40]) {
    const a = randomSymmetric(n, n + 3);
    const { values, vectors } = symmetricEigen(a, n);
    for (let m = 1; m < n; m++) assert.ok(values[m] >= values[m - 1]);
    assertEigenpairs(a, n, values, vectors, n);
  }
});

test("partial solver: the smallest eigenpairs, equal to the full solver's values", () => {
  for (const n of [2, 3, 17, 90]) {
    const a = randomSymmetric(n, 7 * n);
    const full = symmetricEigen(a, n);
    const count = Math.min(n, 7);
    const part = smallestEigenpairs(a, n, count);
    part.values.forEach((value, m) => assert.ok(Math.abs(value - full.values[m]) < 1e-12));
    assertEigenpairs(a, n, part.values, part.vectors, count);
  }
});

test("partial solver: a repeated eigenvalue gives an orthonormal basis of its space", () => {
  const n = 60;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (Math.floor(i / 20) === Math.floor(j / 20)) a[i * n + j] = (i === j ? 1 : 0) - 1 / 20;
  const part = smallestEigenpairs(a, n, 5);
  [0, 1, 2].forEach((m) => assert.ok(Math.abs(part.values[m]) < 1e-12));
  assertEigenpairs(a, n, part.values, part.vectors, 5);
});

test("polar factor is orthogonal and pivots take the largest columns first", () => {
  const a = Float64Array.from([2, 1, 0, 0, 3, 1, 1, 0, 1]);
  const u = polarFactor(a, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let dot = 0;
      for (let r = 0; r < 3; r++) dot += u[r * 3 + i] * u[r * 3 + j];
      assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-12);
    }
  }
  const rows = Float64Array.from([1, 0, 0, 3, 2, 2, 0.5, 0.5]); // four columns of length 2
  assert.deepEqual(pivotedQRColumns(rows, 4, 2, 2), [1, 2]);
});
