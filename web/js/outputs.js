// Writers for transcribed tracks, with the fields of src/timbrescribe/outputs.py: a standard MIDI
// file (format 1, one track per instrument on its own channel, never the drum channel 10), JSON
// ({format, version, tracks: [{name, program, is_drum, confidence, notes}]}) and CSV (CSV_COLUMNS).

export const CSV_COLUMNS = ["track", "onset", "offset", "pitch", "velocity", "track_confidence"];
export const JSON_FORMAT = "timbrescribe-notes";
export const JSON_VERSION = 2;
export const MIDI_RESOLUTION = 480; // ticks per quarter note
export const TIME_DECIMALS = 6;
// MIDI channels (0-based) for pitched tracks, in order: every channel but 9 (the drum channel 10).
export const MELODIC_CHANNELS = Array.from({ length: 16 }, (_, c) => c).filter((c) => c !== 9);

/** Notes in time order (ties by pitch, then offset), the order every writer uses. */
export function sortedNotes(notes) {
  return [...notes].sort((a, b) => a.onset - b.onset || a.pitch - b.pitch || a.offset - b.offset);
}

function rounded(value, decimals) {
  return Number(value.toFixed(decimals));
}

function noteRecord(track, note) {
  return {
    track: track.name,
    onset: rounded(note.onset, TIME_DECIMALS),
    offset: rounded(note.offset, TIME_DECIMALS),
    pitch: note.pitch,
    velocity: note.velocity,
  };
}

function trackConfidence(track) {
  return track.confidence === null || track.confidence === undefined ? null : rounded(track.confidence, 4);
}

/** The JSON document as text. */
export function tracksToJson(tracks) {
  const document = {
    format: JSON_FORMAT,
    version: JSON_VERSION,
    tracks: tracks.map((track) => ({
      name: track.name,
      program: track.program || 0,
      is_drum: Boolean(track.is_drum),
      confidence: trackConfidence(track),
      notes: sortedNotes(track.notes).map((note) => noteRecord(track, note)),
    })),
  };
  return `${JSON.stringify(document, null, 1)}\n`;
}

function csvField(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The CSV text: a header, then one row per note, track by track, notes in time order. */
export function tracksToCsv(tracks) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const track of tracks) {
    const confidence = trackConfidence(track);
    for (const note of sortedNotes(track.notes)) {
      const record = { ...noteRecord(track, note), track_confidence: confidence === null ? "" : confidence };
      lines.push(CSV_COLUMNS.map((column) => csvField(record[column])).join(","));
    }
  }
  return `${lines.join("\r\n")}\r\n`;
}

function variableLength(value) {
  const bytes = [value & 0x7f];
  value = Math.floor(value / 128);
  while (value > 0) {
    bytes.unshift((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  return bytes;
}

function chunk(type, body) {
  const length = body.length;
  return [...type].map((c) => c.charCodeAt(0)).concat(
    [(length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff],
    body,
  );
}

// events: [{tick, order, bytes}] -> track chunk body with delta times and an end-of-track event
function trackBody(events) {
  events.sort((a, b) => a.tick - b.tick || a.order - b.order);
  const body = [];
  let last = 0;
  for (const event of events) {
    body.push(...variableLength(event.tick - last), ...event.bytes);
    last = event.tick;
  }
  body.push(0x00, 0xff, 0x2f, 0x00);
  return body;
}

function textMeta(type, text, tick = 0) {
  const bytes = Array.from(new TextEncoder().encode(text));
  return { tick, order: 0, bytes: [0xff, type, ...variableLength(bytes.length), ...bytes] };
}

/** A standard MIDI file (Uint8Array): a tempo track, then one track per instrument. */
export function tracksToMidi(tracks, tempo = 120) {
  if (!(tempo > 0)) throw new Error(`tempo must be positive, got ${tempo}`);
  const pitched = tracks.filter((t) => !t.is_drum);
  if (pitched.length > MELODIC_CHANNELS.length) {
    throw new Error(`MIDI has ${MELODIC_CHANNELS.length} channels for pitched tracks, got ${tracks.length} tracks`);
  }
  const secondsPerTick = 60 / tempo / MIDI_RESOLUTION;
  const toTick = (seconds) => Math.round(seconds / secondsPerTick);
  const microsecondsPerBeat = Math.round(60e6 / tempo);
  const tempoTrack = trackBody([
    { tick: 0, order: 0, bytes: [0xff, 0x51, 0x03, (microsecondsPerBeat >> 16) & 0xff, (microsecondsPerBeat >> 8) & 0xff, microsecondsPerBeat & 0xff] },
    { tick: 0, order: 1, bytes: [0xff, 0x58, 0x04, 4, 2, 24, 8] },
  ]);
  const chunks = [chunk("MTrk", tempoTrack)];
  let nextChannel = 0;
  for (const track of tracks) {
    const channel = track.is_drum ? 9 : MELODIC_CHANNELS[nextChannel++];
    const events = [textMeta(0x03, track.name), { tick: 0, order: 1, bytes: [0xc0 | channel, (track.program || 0) & 0x7f] }];
    for (const note of sortedNotes(track.notes)) {
      const on = toTick(note.onset);
      const off = Math.max(toTick(note.offset), on + 1);
      events.push({ tick: on, order: 3, bytes: [0x90 | channel, note.pitch & 0x7f, Math.min(127, Math.max(1, note.velocity))] });
      events.push({ tick: off, order: 2, bytes: [0x80 | channel, note.pitch & 0x7f, 0] }); // offs before ons
    }
    chunks.push(chunk("MTrk", trackBody(events)));
  }
  const count = chunks.length;
  const header = chunk("MThd", [0, 1, (count >> 8) & 0xff, count & 0xff, (MIDI_RESOLUTION >> 8) & 0xff, MIDI_RESOLUTION & 0xff]);
  return Uint8Array.from(header.concat(...chunks));
}

/** Notes per track read back from a MIDI file written by tracksToMidi (for tests and checks). */
export function readMidi(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (at, n) => String.fromCharCode(...bytes.subarray(at, at + n));
  if (text(0, 4) !== "MThd") throw new Error("not a MIDI file");
  const division = view.getUint16(12);
  let at = 8 + view.getUint32(4);
  const tracks = [];
  let secondsPerTick = 0.5 / division;
  while (at < bytes.length) {
    if (text(at, 4) !== "MTrk") throw new Error("bad track chunk");
    const end = at + 8 + view.getUint32(at + 4);
    let p = at + 8;
    let tick = 0;
    const track = { name: "", channel: null, notes: [] };
    const open = new Map();
    const readVariable = () => {
      let value = 0;
      let byte;
      do {
        byte = bytes[p++];
        value = value * 128 + (byte & 0x7f);
      } while (byte & 0x80);
      return value;
    };
    while (p < end) {
      tick += readVariable();
      const status = bytes[p++];
      if (status === 0xff) {
        const type = bytes[p++];
        const length = readVariable();
        if (type === 0x03) track.name = new TextDecoder().decode(bytes.subarray(p, p + length));
        if (type === 0x51) secondsPerTick = ((bytes[p] << 16) | (bytes[p + 1] << 8) | bytes[p + 2]) / 1e6 / division;
        p += length;
      } else if ((status & 0xf0) === 0xc0) {
        track.channel = status & 0x0f;
        p += 1;
      } else if ((status & 0xf0) === 0x90 || (status & 0xf0) === 0x80) {
        track.channel = status & 0x0f;
        const pitch = bytes[p++];
        const velocity = bytes[p++];
        if ((status & 0xf0) === 0x90 && velocity > 0) open.set(pitch, { tick, velocity });
        else if (open.has(pitch)) {
          const started = open.get(pitch);
          open.delete(pitch);
          track.notes.push({ onset: started.tick * secondsPerTick, offset: tick * secondsPerTick, pitch, velocity: started.velocity });
        }
      } else throw new Error(`unexpected MIDI event ${status}`);
    }
    track.notes.sort((a, b) => a.onset - b.onset || a.pitch - b.pitch);
    tracks.push(track);
    at = end;
  }
  return tracks;
}
