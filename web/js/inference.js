// Two-pass chunked inference with onnxruntime-web, as AgnosticSession.activations in
// src/timbrescribe/inference.py. Pass 1 runs the energy graph over the chunks and sums
// [count, sum E, sum E^2] of the kept frames; pass 2 runs the network on the chunks with that
// whole-file statistic and keeps each chunk's centre. Memory: the whole-file onset and frame maps
// plus one chunk at a time; embeddings never exist for the whole file (only sounding cells are kept).

import { chunkSpans, nFrames } from "./chunks.js";
import { toFloat16 } from "./pooling.js";

/** onnxruntime sessions of one exported model (network + energy graph). */
export async function openModel(ort, card, options) {
  const [network, energy] = await Promise.all([
    ort.InferenceSession.create(card.networkUrl, options),
    ort.InferenceSession.create(card.energyUrl, options),
  ]);
  return { card, network, energy, hasEmbeddings: network.outputNames.includes("embedding") };
}

function audioTensor(ort, audio, span) {
  const samples = audio.slice(span.start, span.stop); // a copy: the tensor may be handed to the runtime
  return new ort.Tensor("float32", samples, [1, samples.length]);
}

/**
 * Onset and frame maps ({onset, frame: Float32Array(nPitches * nFrames) row-major, nFrames}) of mono
 * audio at the card's rate. `progress(done, total)` after every chunk of both passes; `cells`
 * (a CellStore) receives the sounding cells' embeddings when given.
 */
export async function activations(ort, model, audio, { progress = () => {}, cells = null } = {}) {
  const { card } = model;
  const spans = chunkSpans(card, audio.length);
  const total = nFrames(audio.length, card.hop);
  const nPitches = card.n_pitches;
  const steps = 2 * spans.length;

  let count = 0;
  let sum = 0;
  let squares = 0;
  for (const [index, span] of spans.entries()) {
    const input = audioTensor(ort, audio, span);
    const outputs = await model.energy.run({ audio: input });
    const energy = outputs[model.energy.outputNames[0]].data;
    for (let t = span.keepFirst - span.first; t < span.keepEnd - span.first; t++) {
      const e = energy[t];
      count += 1;
      sum += e;
      squares += e * e;
    }
    disposeAll(outputs);
    input.dispose?.();
    progress(index + 1, steps);
  }
  const moments = new ort.Tensor("float32", Float32Array.from([count, sum, squares]), [1, 3]);

  const onset = new Float32Array(nPitches * total);
  const frame = new Float32Array(nPitches * total);
  // Past short_file_seconds the Python runtime keeps its maps as float16: the same values here.
  const halfPrecision = audio.length > card.short_file_seconds * card.sample_rate;
  const wanted = ["onset", "frame"].concat(cells ? ["embedding"] : []);
  for (const [index, span] of spans.entries()) {
    const input = audioTensor(ort, audio, span);
    const outputs = await model.network.run({ audio: input, energy_moments: moments }, wanted);
    const width = span.end - span.first;
    const from = span.keepFirst - span.first;
    const kept = span.keepEnd - span.keepFirst;
    for (const [name, target] of [["onset", onset], ["frame", frame]]) {
      const values = outputs[name].data;
      for (let row = 0; row < nPitches; row++) {
        const at = row * total + span.keepFirst;
        target.set(values.subarray(row * width + from, row * width + from + kept), at);
        if (halfPrecision) for (let i = at; i < at + kept; i++) target[i] = toFloat16(target[i]);
      }
    }
    if (cells) cells.add(outputs.frame.data, outputs.embedding.data, width, from, from + kept, span.keepFirst);
    disposeAll(outputs);
    input.dispose?.();
    progress(spans.length + index + 1, steps);
  }
  return { onset, frame, nFrames: total };
}

function disposeAll(outputs) {
  for (const tensor of Object.values(outputs)) tensor.dispose?.();
}
