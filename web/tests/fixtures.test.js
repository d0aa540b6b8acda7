// The JavaScript ports against the golden fixtures that scripts/make_web_fixtures.py makes with the
// Python code: decoder, pooling, clustering (labels equal up to a renaming of the groups), tracks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { chunkSpans } from "../js/chunks.js";
import { clusterNotes } from "../js/clustering.js";
import { decodeNotes, denseEnds } from "../js/decode.js";
import { CellStore } from "../js/pooling.js";
import { tracksFromClustering } from "../js/tracks.js";

const FIXTURES = new URL("../../tests/web/fixtures/", import.meta.url);
const CONSTANTS = { sample_rate: 22050, hop: 256, midi_min: 24, n_pitches: 84, embedding_dim: 12 };

function fixture(name) {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8"));
}

function bytes(b64) {
  return Uint8Array.from(Buffer.from(b64, "base64"));
}

function float32s(b64) {
  const raw = bytes(b64);
  return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
}

function mapFromCodes(b64, scale) {
  const raw = bytes(b64);
  const codes = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  return Float32Array.from(codes, (q) => q / scale);
}

const decodeCases = fixture("decode.json");
for (const testCase of decodeCases.cases) {
  test(`decoder: ${testCase.name}`, () => {
    const maps = [mapFromCodes(testCase.onset_codes, decodeCases.code_scale), mapFromCodes(testCase.frame_codes, decodeCases.code_scale)];
    for (const [which, index, value] of testCase.overrides) maps[which][index] = value;
    const mapSet = { onset: maps[0], frame: maps[1], nFrames: testCase.n_frames };
    // separated: decoded with the dense-frame rule off, whose ends it then extends (as pipeline.js)
    const notes = testCase.separated
      ? denseEnds(decodeNotes(mapSet, { ...testCase.settings, dense_polyphony: 0 }, CONSTANTS), mapSet, testCase.settings, CONSTANTS)
      : decodeNotes(mapSet, testCase.settings, CONSTANTS);
    assert.deepEqual(notes, testCase.notes);
  });
}

test("pooling: per-note vectors from two chunks of cells", () => {
  const data = fixture("pooling.json");
  const frame = float32s(data.frame);
  const embedding = float32s(data.embedding);
  const t = data.n_frames;
  const store = new CellStore(data.floor, 84, 12);
  store.add(frame, embedding, t, 0, data.split, 0);
  store.add(frame, embedding, t, data.split, t, data.split);
  const vectors = store.pool(data.notes, CONSTANTS);
  assert.equal(vectors.length, data.vectors.length);
  vectors.forEach((vector, i) => {
    vector.forEach((x, d) => assert.ok(Math.abs(x - data.vectors[i][d]) < 1e-6, `note ${i} dim ${d}: ${x} vs ${data.vectors[i][d]}`));
  });
});

/** True when labels a and b are the same partition (equal up to renaming the groups). */
function samePartition(a, b) {
  const forward = new Map();
  const backward = new Map();
  return a.length === b.length && a.every((x, i) => {
    const y = b[i];
    if (!forward.has(x)) forward.set(x, y);
    if (!backward.has(y)) backward.set(y, x);
    return forward.get(x) === y && backward.get(y) === x;
  });
}

for (const testCase of fixture("clustering.json").cases) {
  test(`clustering: ${testCase.name}`, () => {
    const result = clusterNotes(testCase.vectors, testCase.k, testCase.settings, testCase.notes);
    assert.equal(result.k, testCase.k_out);
    assert.ok(samePartition(result.labels, testCase.labels), `labels ${result.labels} vs ${testCase.labels}`);
    // with the same partition, the groups map one to one; confidences follow the notes
    result.confidence.forEach((c, i) => assert.ok(Math.abs(c - testCase.confidence[i]) < 1e-6, `confidence ${i}`));
    const tracks = tracksFromClustering(testCase.notes, result);
    assert.deepEqual(
      tracks.map((t) => [t.name, t.notes.map((n) => n.pitch)]),
      testCase.tracks.map((t) => [t.name, t.pitches]),
    );
    tracks.forEach((t, i) => {
      const expected = testCase.tracks[i].confidence;
      if (expected === null) assert.equal(t.confidence, null);
      else assert.ok(Math.abs(t.confidence - expected) < 1e-6);
    });
  });
}

test("chunk layout of the two passes, per model and file length", () => {
  const cards = {
    agnostic: JSON.parse(readFileSync(new URL("../../src/timbrescribe/weights/agnostic.card.json", import.meta.url), "utf8")),
    separation: JSON.parse(readFileSync(new URL("../../src/timbrescribe/weights/separation.card.json", import.meta.url), "utf8")),
  };
  for (const testCase of fixture("chunks.json").cases) {
    const spans = chunkSpans(cards[testCase.model], testCase.n_samples).map((s) => [s.first, s.end, s.keepFirst, s.keepEnd]);
    assert.equal(spans.length, testCase.count, `${testCase.model} ${testCase.n_samples}`);
    assert.deepEqual(spans.slice(0, 3), testCase.first_spans);
    assert.deepEqual(spans.at(-1), testCase.last_span);
  }
});
