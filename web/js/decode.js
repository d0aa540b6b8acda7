// Note decoder: onset and frame maps -> notes. A port of src/timbrescribe/decode.py, one pitch row at
// a time (pitches interact only through the dense frames, counted over all rows first, so the notes
// are the same as from the whole map at once).
//
// Row k of a map is MIDI pitch midiMin + k; a note over frames [s, e) has onset s * hop / sampleRate
// and offset e * hop / sampleRate. The maps are float32 probabilities and numpy compares them with
// the thresholds in float32, so the thresholds are rounded to float32 here too (Math.fround).

const f32 = Math.fround;

/** Fewest frames a kept note spans (DecoderSettings.min_note_frames). */
export function minNoteFrames(settings, frameRate) {
  return Math.max(1, Math.ceil((settings.min_note_ms * frameRate) / 1000 - 1e-9));
}

/** Round half to even, as numpy's rint. */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** mask with every gap of at most maxDip false cells between two true cells set (a new array). */
export function bridgeDips(mask, maxDip) {
  const out = Uint8Array.from(mask);
  let previousTrue = -1;
  for (let t = 0; t < mask.length; t++) {
    if (!mask[t]) continue;
    const gap = t - previousTrue - 1;
    if (previousTrue >= 0 && gap > 0 && gap <= maxDip) out.fill(1, previousTrue + 1, t);
    previousTrue = t;
  }
  return out;
}

function onsetPeaks(onset, threshold) {
  const n = onset.length;
  const peaks = new Uint8Array(n);
  const limit = f32(threshold);
  for (let t = 0; t < n; t++) {
    const value = onset[t];
    const before = t > 0 ? onset[t - 1] : -Infinity;
    const after = t + 1 < n ? onset[t + 1] : -Infinity;
    if (value > before && value >= after && value >= limit) peaks[t] = 1;
  }
  return peaks;
}

function near(mask, reach) {
  const n = mask.length;
  const out = new Uint8Array(n);
  for (let t = 0; t < n; t++) {
    if (!mask[t]) continue;
    out.fill(1, Math.max(0, t - reach), Math.min(n, t + reach + 1));
  }
  return out;
}

function inferredOnsets(frame, sounding, peaks, settings) {
  const n = frame.length;
  const out = new Uint8Array(n);
  const closeToPeak = near(peaks, settings.inferred_onset_gap);
  const rise = f32(settings.rise_threshold);
  for (let t = 0; t < n; t++) {
    if (!sounding[t] || (t > 0 && sounding[t - 1]) || closeToPeak[t]) continue;
    const before = t > 0 ? frame[t - 1] : 0;
    const after = t + 1 < n ? frame[t + 1] : frame[n - 1];
    if (f32(Math.max(frame[t], after) - before) >= rise) out[t] = 1;
  }
  return out;
}

function spanSum(values, start, end) {
  let total = 0;
  for (let t = start; t < end; t++) total += values[t];
  return total;
}

function spanMax(values, start, end) {
  let peak = -Infinity;
  for (let t = start; t < end; t++) if (values[t] > peak) peak = values[t];
  return peak;
}

/**
 * Frames where at least settings.dense_polyphony pitch rows reach the frame threshold (a Uint8Array
 * of nFrames), or null when the rule is off (0 or absent, as in settings files written before it).
 */
function denseFrames(frameMap, nFrames, nPitches, settings) {
  const needed = settings.dense_polyphony ?? 0;
  if (needed === 0) return null;
  const limit = f32(settings.frame_threshold);
  const count = new Uint16Array(nFrames);
  for (let row = 0; row < nPitches; row++) {
    const offset = row * nFrames;
    for (let t = 0; t < nFrames; t++) if (frameMap[offset + t] >= limit) count[t]++;
  }
  return count.map((c) => (c >= needed ? 1 : 0));
}

/** Sets `lasting` (one row) where, in a dense frame, the frame map reaches the dense threshold. */
function addDenseFrames(lasting, frame, dense, settings) {
  if (!dense) return;
  const denseLimit = f32(settings.dense_frame_threshold);
  for (let t = 0; t < frame.length; t++) if (dense[t] && frame[t] >= denseLimit) lasting[t] = 1;
}

/**
 * Notes of one pitch row: [{start, end, velocity}] in frames, in no particular order. `dense`: the
 * dense frames of the whole map (denseFrames), or null.
 */
function decodeRow(onset, frame, settings, frameRate, dense) {
  const n = frame.length;
  const minFrames = minNoteFrames(settings, frameRate);
  const frameLimit = f32(settings.frame_threshold);
  const active = new Uint8Array(n);
  for (let t = 0; t < n; t++) active[t] = frame[t] >= frameLimit ? 1 : 0;
  const sounding = bridgeDips(active, settings.max_dip_frames);
  const candidates = onsetPeaks(onset, settings.onset_threshold);
  if (settings.infer_onsets) {
    const inferred = inferredOnsets(frame, sounding, candidates, settings);
    for (let t = 0; t < n; t++) candidates[t] |= inferred[t];
  }
  const lasting = new Uint8Array(n);
  for (let t = 0; t < n; t++) lasting[t] = active[t] | candidates[t];
  addDenseFrames(lasting, frame, dense, settings);
  const inNote = bridgeDips(lasting, settings.max_dip_frames);

  const spans = [];
  const covered = new Uint8Array(n);
  for (let s = 0; s < n; s++) {
    if (!candidates[s]) continue;
    let end = s + 1;
    while (end < n && inNote[end] && !candidates[end]) end++;
    if (end - s >= minFrames) {
      spans.push([s, end]);
      covered.fill(1, s, end);
    }
  }
  if (settings.leftover_notes) {
    let t = 0;
    while (t < n) {
      if (!(sounding[t] && !covered[t])) { t++; continue; }
      const start = t;
      while (t < n && sounding[t] && !covered[t]) t++;
      if (t - start >= minFrames && spanMax(frame, start, t) >= settings.leftover_threshold) spans.push([start, t]);
    }
  }
  return spans.map(([start, end]) => {
    const mean = spanSum(frame, start, end) / (end - start);
    const velocity = Math.min(127, Math.max(1, roundHalfEven(127 * mean)));
    return { start, end, velocity };
  });
}

/**
 * `notes` (decodeNotes with the dense-frame rule off), each running on while the rule of `settings`
 * keeps it sounding, never past the start of the next of them at its pitch: only ends move, and
 * only later; order kept (decode.dense_ends). The separated transcription applies the rule so,
 * after clustering.
 */
export function denseEnds(notes, maps, settings, constants) {
  const { nFrames } = maps;
  const { sample_rate: sampleRate, hop, midi_min: midiMin, n_pitches: nPitches } = constants;
  const dense = denseFrames(maps.frame, nFrames, nPitches, settings);
  if (!dense || notes.length === 0) return notes.slice();
  const toFrame = (seconds) => Math.round((seconds * sampleRate) / hop);
  const byRow = new Map();
  notes.forEach((note, index) => {
    const row = note.pitch - midiMin;
    if (!byRow.has(row)) byRow.set(row, []);
    byRow.get(row).push(index);
  });
  const frameLimit = f32(settings.frame_threshold);
  const out = notes.slice();
  for (const [row, indices] of byRow) {
    const frame = maps.frame.subarray(row * nFrames, (row + 1) * nFrames);
    const lasting = Uint8Array.from(frame, (value) => (value >= frameLimit ? 1 : 0));
    addDenseFrames(lasting, frame, dense, settings);
    const inNote = bridgeDips(lasting, settings.max_dip_frames);
    const starts = new Uint8Array(nFrames);
    for (const index of indices) starts[toFrame(notes[index].onset)] = 1;
    for (const index of indices) {
      const end = toFrame(notes[index].offset);
      let later = end;
      while (later < nFrames && inNote[later] && !starts[later]) later++;
      if (later > end) out[index] = { ...notes[index], offset: (later * hop) / sampleRate };
    }
  }
  return out;
}

/**
 * Notes from onset and frame maps: `maps.onset` and `maps.frame` are Float32Arrays of nPitches x
 * nFrames, row-major (row = pitch). Returns [{onset, offset, pitch, velocity}] sorted by (onset, pitch).
 * `constants`: {sample_rate, hop, midi_min, n_pitches} (a model card).
 */
export function decodeNotes(maps, settings, constants) {
  const { nFrames } = maps;
  const { sample_rate: sampleRate, hop, midi_min: midiMin, n_pitches: nPitches } = constants;
  if (maps.onset.length !== nPitches * nFrames || maps.frame.length !== nPitches * nFrames) {
    throw new Error(`onset and frame maps must both be ${nPitches} x ${nFrames}`);
  }
  const frameRate = sampleRate / hop;
  const dense = denseFrames(maps.frame, nFrames, nPitches, settings);
  const found = [];
  for (let row = 0; row < nPitches; row++) {
    const onsetRow = maps.onset.subarray(row * nFrames, (row + 1) * nFrames);
    const frameRow = maps.frame.subarray(row * nFrames, (row + 1) * nFrames);
    for (const span of decodeRow(onsetRow, frameRow, settings, frameRate, dense)) found.push({ row, ...span });
  }
  found.sort((a, b) => a.start - b.start || a.row - b.row);
  return found.map(({ row, start, end, velocity }) => ({
    onset: (start * hop) / sampleRate,
    offset: (end * hop) / sampleRate,
    pitch: midiMin + row,
    velocity,
  }));
}
