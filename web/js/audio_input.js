// A dropped file -> mono samples at the model rate, with the Web Audio API: the browser decodes the
// file and resamples it to the context's rate (an OfflineAudioContext at the model rate); the
// channels are then averaged, as the Python runtime does. Errors carry a message for the page.

export const MAX_SECONDS = 30 * 60; // longer recordings: the whole-file maps would not fit comfortably
export const MAX_FILE_BYTES = 600 * 1024 * 1024;
const LARGE_FILE_BYTES = 100 * 1024 * 1024; // a failed decoding of a larger file may be memory
export const SILENCE_PEAK = 1e-5; // -100 dBFS
export const MAX_SAMPLE_MAGNITUDE = 1e6; // as audio.MAX_SAMPLE_MAGNITUDE

export class InputError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // "unreadable", "silent", "too-long", "too-short"
  }
}

function minutes(seconds) {
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** {buffer: AudioBuffer at sampleRate, mono: Float32Array, duration} of a File or Blob. */
export async function decodeFile(file, sampleRate, hop) {
  if (file.size > MAX_FILE_BYTES) {
    throw new InputError("too-long", `${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MB: too large to decode in the browser's memory (at most ${MAX_FILE_BYTES / 2 ** 20} MB). Use the command line (timbrescribe transcribe) for long recordings.`);
  }
  if (file.size === 0) throw new InputError("unreadable", `${file.name} is empty.`);
  let buffer;
  try {
    const bytes = await file.arrayBuffer();
    const context = new OfflineAudioContext(1, 1, sampleRate);
    buffer = await context.decodeAudioData(bytes);
  } catch (err) {
    if (err instanceof RangeError || /memory|allocation/i.test(String(err?.message))) {
      throw new InputError("too-long", `${file.name} is too long to decode in the browser's memory. Use the command line (timbrescribe transcribe) for long recordings.`);
    }
    if (file.size > LARGE_FILE_BYTES) {
      throw new InputError("unreadable", `Cannot read ${file.name} as audio: the browser could not decode it (damaged, a format this browser does not play, or too long for the browser's memory; the command line, timbrescribe transcribe, streams long recordings).`);
    }
    throw new InputError("unreadable", `Cannot read ${file.name} as audio: the browser could not decode it (not an audio file, damaged, or a format this browser does not play).`);
  }
  if (buffer.duration > MAX_SECONDS) {
    throw new InputError("too-long", `${file.name} lasts ${minutes(buffer.duration)}: the page takes at most ${MAX_SECONDS / 60} minutes (memory). Use the command line (timbrescribe transcribe) for longer recordings.`);
  }
  if (buffer.length < hop) throw new InputError("too-short", `${file.name} is too short to transcribe (${(buffer.duration * 1000).toFixed(1)} ms).`);
  const mono = new Float32Array(buffer.length);
  const channels = buffer.numberOfChannels;
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < data.length; i++) mono[i] += data[i];
  }
  let peak = 0;
  for (let i = 0; i < mono.length; i++) {
    if (channels > 1) mono[i] /= channels;
    const magnitude = Math.abs(mono[i]);
    if (!(magnitude <= MAX_SAMPLE_MAGNITUDE)) {
      throw new InputError("unreadable", `${file.name}: samples are not finite or far beyond full scale; the file's scaling looks wrong.`);
    }
    if (magnitude > peak) peak = magnitude;
  }
  if (peak < SILENCE_PEAK) throw new InputError("silent", `${file.name} is silent (no sample above -100 dBFS): there is nothing to transcribe.`);
  return { buffer, mono, duration: buffer.duration };
}
