// Per-note timbre vectors from cell embeddings: a port of src/timbrescribe/pooling.py.
//
// Only cells whose frame activation reaches a floor are kept, chunk by chunk, so memory grows with
// the sounding cells, never with pitches x frames x embedding size. A note's vector is the mean of
// its cells' embeddings (at its pitch, over its frames) weighted by the frame activation, then
// L2-normalised. Embeddings are stored as float16 as in Python, so the sums see the same values.

const f32 = Math.fround;

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** A float rounded to the nearest float16 value (round half to even), returned as a number. */
export function toFloat16(value) {
  scratch[0] = value;
  const bits = scratchBits[0];
  const sign = bits >>> 31 ? -1 : 1;
  const exponent = (bits >>> 23) & 0xff;
  if (exponent === 0xff) return value;
  const magnitude = Math.abs(scratch[0]);
  if (magnitude >= 65520) return sign * Infinity;
  // Spacing of float16 values around this magnitude: 2^(e - 10), at least 2^-24 (subnormals).
  const e = Math.max(Math.floor(Math.log2(magnitude || 1)), -14);
  let step = 2 ** (e - 10);
  if (e > -14 && magnitude < 2 ** e) step /= 2; // log2 rounded up just below a power of two
  const units = magnitude / step;
  let rounded = Math.floor(units);
  const rest = units - rounded;
  if (rest > 0.5 || (rest === 0.5 && rounded % 2 === 1)) rounded += 1;
  return sign * rounded * step;
}

/** Sounding cells of a file, added chunk by chunk in time order; one growing list per pitch row. */
export class CellStore {
  constructor(floor, nPitches, dim) {
    this.floor = f32(floor);
    this.nPitches = nPitches;
    this.dim = dim;
    this.rows = Array.from({ length: nPitches }, () => ({ frames: [], weights: [], embeddings: [] }));
    this.nCells = 0;
  }

  /**
   * Keep the cells of a chunk: `frame` (nPitches x t, row-major), `embedding` (dim x nPitches x t,
   * row-major), of which frames [keepFrom, keepTo) are kept, file frame of column keepFrom: firstFrame.
   */
  add(frame, embedding, t, keepFrom, keepTo, firstFrame) {
    const planeSize = this.nPitches * t;
    for (let row = 0; row < this.nPitches; row++) {
      const target = this.rows[row];
      for (let col = keepFrom; col < keepTo; col++) {
        const weight = frame[row * t + col];
        if (!(weight >= this.floor)) continue;
        target.frames.push(firstFrame + col - keepFrom);
        target.weights.push(weight);
        for (let d = 0; d < this.dim; d++) target.embeddings.push(toFloat16(embedding[d * planeSize + row * t + col]));
        this.nCells++;
      }
    }
  }

  /** One unit vector (Float32Array of dim) per note; zeros for a note without a stored cell. */
  pool(notes, constants) {
    const { sample_rate: sampleRate, hop, midi_min: midiMin } = constants;
    return notes.map((note) => {
      const start = roundHalfEvenFrames((note.onset * sampleRate) / hop);
      const end = Math.max(roundHalfEvenFrames((note.offset * sampleRate) / hop), start + 1);
      const row = this.rows[note.pitch - midiMin];
      const sums = new Float64Array(this.dim);
      if (row) {
        for (let i = lowerBound(row.frames, start); i < row.frames.length && row.frames[i] < end; i++) {
          for (let d = 0; d < this.dim; d++) sums[d] += f32(row.embeddings[i * this.dim + d] * row.weights[i]);
        }
      }
      let norm = 0;
      for (let d = 0; d < this.dim; d++) norm += sums[d] * sums[d];
      norm = Math.sqrt(norm);
      const vector = new Float32Array(this.dim);
      if (norm > 0) for (let d = 0; d < this.dim; d++) vector[d] = sums[d] / Math.max(norm, 1e-12);
      return vector;
    });
  }
}

function roundHalfEvenFrames(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

function lowerBound(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
