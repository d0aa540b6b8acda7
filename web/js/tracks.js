// Clustered notes -> named tracks, as transcription.tracks_from_clustering; and the single track of
// the note model alone.

export const AGNOSTIC_TRACK_NAME = "notes";

/** One track per group, by mean pitch from high to low, named "instrument 1..K"; empty ones last. */
export function tracksFromClustering(notes, clustering) {
  const groups = Array.from({ length: clustering.k }, () => []);
  const confidences = Array.from({ length: clustering.k }, () => []);
  notes.forEach((note, i) => {
    groups[clustering.labels[i]].push(note);
    confidences[clustering.labels[i]].push(clustering.confidence[i]);
  });
  const meanPitch = (group) => (group.length ? group.reduce((s, n) => s + n.pitch, 0) / group.length : 0);
  const order = groups
    .map((group, g) => g)
    .sort((a, b) => Number(!groups[a].length) - Number(!groups[b].length) || meanPitch(groups[b]) - meanPitch(groups[a]));
  return order.map((g, rank) => ({
    name: `instrument ${rank + 1}`,
    notes: groups[g],
    program: 0,
    is_drum: false,
    confidence: groups[g].length ? confidences[g].reduce((s, c) => s + c, 0) / groups[g].length : null,
  }));
}

/** The one track of the note model. */
export function agnosticTrack(notes) {
  return [{ name: AGNOSTIC_TRACK_NAME, notes, program: 0, is_drum: false, confidence: null }];
}
