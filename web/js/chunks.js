// Chunk layout of the two-pass runtime (src/timbrescribe/inference.py): the kept ranges tile the
// file's frames, each computed range adds up to context_frames on both sides.

/** Frames an input of n samples gives: floor((n - 1) / hop) + 1. */
export function nFrames(nSamples, hop) {
  if (nSamples < 1) throw new Error(`need at least one sample, got ${nSamples}`);
  return Math.floor((nSamples - 1) / hop) + 1;
}

/** Seconds of audio kept per chunk for a file of nSamples under a model card. */
export function chunkSeconds(card, nSamples) {
  const short = nSamples <= card.short_file_seconds * card.sample_rate;
  return short ? card.short_file_chunk_seconds : card.chunk_seconds;
}

/** [{first, end, keepFirst, keepEnd, start, stop}]: frames computed and kept, samples read. */
export function chunkSpans(card, nSamples) {
  const total = nFrames(nSamples, card.hop);
  const frameRate = card.sample_rate / card.hop;
  // a multiple of chunk_frame_multiple, so that every chunk starts on a frame the model expects
  const multiple = card.chunk_frame_multiple;
  const chunkFrames = multiple * Math.max(1, Math.round((chunkSeconds(card, nSamples) * frameRate) / multiple));
  const spans = [];
  for (let keepFirst = 0; keepFirst < total; keepFirst += chunkFrames) {
    const keepEnd = Math.min(total, keepFirst + chunkFrames);
    const first = Math.max(0, keepFirst - card.context_frames);
    const end = Math.min(total, keepEnd + card.context_frames);
    spans.push({ first, end, keepFirst, keepEnd, start: first * card.hop, stop: Math.min(end * card.hop, nSamples) });
  }
  return spans;
}
