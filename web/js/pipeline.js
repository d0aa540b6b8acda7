// The whole transcription of mono audio at the model rate, as transcription.transcribe: chunked
// network -> decoded notes -> (separation) pooled timbre vectors -> clustered tracks.

import { clusterNotes } from "./clustering.js";
import { decodeNotes, denseEnds } from "./decode.js";
import { activations } from "./inference.js";
import { CellStore } from "./pooling.js";
import { agnosticTrack, tracksFromClustering } from "./tracks.js";

/**
 * `instruments`: null (estimate K) or 1..N. `openModel(card)` gives the model for a card (cached by
 * the caller). Returns {notes, tracks, k, instrumentsEstimated, durationSeconds, maps}.
 */
export async function transcribeAudio(ort, config, openModel, audio, instruments, progress = () => {}) {
  const separate = instruments !== 1;
  const card = separate ? config.separation : config.agnostic;
  const model = await openModel(card);
  if (separate && !model.hasEmbeddings) throw new Error("the separation model gives no timbre embeddings");
  const settings = card.decoder;
  const cells = separate ? new CellStore(card.cell_floor_ratio * settings.frame_threshold, card.n_pitches, card.embedding_dim) : null;
  const maps = await activations(ort, model, audio, { progress, cells });
  // The notes to cluster are decoded with the dense-frame rule off; it extends their ends after.
  let notes = decodeNotes(maps, separate ? { ...settings, dense_polyphony: 0 } : settings, card);
  let tracks;
  let k = 1;
  if (separate) {
    const vectors = cells.pool(notes, card);
    const clustering = clusterNotes(vectors, instruments, card.clustering, notes);
    notes = denseEnds(notes, maps, settings, card);
    tracks = tracksFromClustering(notes, clustering);
    k = clustering.k;
  } else {
    tracks = agnosticTrack(notes);
  }
  return {
    notes,
    tracks,
    k,
    instrumentsEstimated: instruments === null,
    durationSeconds: audio.length / card.sample_rate,
    maps,
  };
}
