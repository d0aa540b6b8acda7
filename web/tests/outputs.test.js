// The MIDI, JSON and CSV writers: fields as the Python outputs, a MIDI file that reads back.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CSV_COLUMNS, readMidi, tracksToCsv, tracksToJson, tracksToMidi } from "../js/outputs.js";

const tracks = Array.from({ length: 11 }, (_, i) => ({
  name: `instrument ${i + 1}`,
  program: 0,
  is_drum: false,
  confidence: i === 10 ? null : 0.5 + i / 100,
  notes: [
    { onset: 1.5 + i, offset: 2.25 + i, pitch: 60 + i, velocity: 90 },
    { onset: 0.123456789, offset: 0.5, pitch: 40 + i, velocity: 30 },
    { onset: 0.5, offset: 0.75, pitch: 40 + i, velocity: 31 }, // starts where the one before ends
  ],
}));

test("MIDI: one track per instrument after the tempo track, own channels, never channel 10", () => {
  const bytes = tracksToMidi(tracks);
  assert.equal(String.fromCharCode(...bytes.subarray(0, 4)), "MThd");
  const read = readMidi(bytes);
  assert.equal(read.length, tracks.length + 1);
  const channels = read.slice(1).map((t) => t.channel);
  assert.deepEqual(channels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
  read.slice(1).forEach((track, i) => {
    assert.equal(track.name, tracks[i].name);
    assert.deepEqual(track.notes.map((n) => [n.pitch, n.velocity]), [[40 + i, 30], [40 + i, 31], [60 + i, 90]]);
    assert.ok(Math.abs(track.notes[0].onset - 0.123456789) <= 1 / 960 / 2 + 1e-12);
    assert.equal(track.notes[1].onset, 0.5);
    assert.equal(track.notes[2].offset, 2.25 + i);
  });
});

test("MIDI: more pitched tracks than channels is refused", () => {
  const many = Array.from({ length: 16 }, (_, i) => ({ name: `t${i}`, notes: [] }));
  assert.throws(() => tracksToMidi(many), /15 channels/);
});

test("JSON: the Python document's keys, notes in time order, times to microseconds", () => {
  const document = JSON.parse(tracksToJson(tracks));
  assert.equal(document.format, "timbrescribe-notes");
  assert.equal(document.version, 2);
  assert.deepEqual(Object.keys(document.tracks[0]), ["name", "program", "is_drum", "confidence", "notes"]);
  assert.deepEqual(document.tracks[0].notes[0], { track: "instrument 1", onset: 0.123457, offset: 0.5, pitch: 40, velocity: 30 });
  assert.equal(document.tracks[10].confidence, null);
});

test("CSV: the Python columns, one row per note, empty confidence for an unclustered track", () => {
  const lines = tracksToCsv(tracks).trimEnd().split("\r\n");
  assert.equal(lines[0], CSV_COLUMNS.join(","));
  assert.equal(lines.length, 1 + 3 * tracks.length);
  assert.equal(lines[1], "instrument 1,0.123457,0.5,40,30,0.5");
  assert.equal(lines.at(-1), "instrument 11,11.5,12.25,70,90,");
});
