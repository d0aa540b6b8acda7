// The page in headless Chromium against the command line: the bundled example transcribed in the
// browser gives the CLI's notes (same pitches, onsets within one frame), one track and separated
// with a given K; the downloads parse; unreadable, silent and too long files give their messages;
// a screenshot goes to out/web/page.png.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { readMidi } from "../../js/outputs.js";
import { launch } from "./chromium.js";
import { ROOT, startServer, TIMBRESCRIBE } from "./server.js";

const EXAMPLE = `${ROOT}src/timbrescribe/examples/example.flac`;
const OUT = `${ROOT}out/web/`;
const FRAME_SECONDS = 256 / 22050;
const SEPARATED_K = 3;

let server;
let browser;
let page;
const scratch = mkdtempSync(join(tmpdir(), "timbrescribe-web-test-"));

before(async () => {
  mkdirSync(OUT, { recursive: true });
  server = await startServer();
  browser = await launch({ downloadsPath: scratch });
  page = await browser.context.newPage();
  page.on("pageerror", (err) => console.log(`page error: ${err.message}`));
  await page.goto(server.url);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: 60000 });
  assert.equal(await page.evaluate(() => document.body.dataset.state), "ready", await page.textContent("#message"));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** The notes of the CLI's JSON output for the example with -k `k`: [{track, onset, pitch, ...}]. */
function cliTranscription(k) {
  const folder = join(scratch, `cli-k${k}`);
  execFileSync(TIMBRESCRIBE, ["transcribe", EXAMPLE, "-o", folder, "-k", String(k), "--format", "json", "-q"], { stdio: "inherit" });
  return JSON.parse(readFileSync(join(folder, "example.json"), "utf8"));
}

/** Runs `action` on the page, then waits for the transcription it starts to end; the end state. */
async function transcribeWith(action) {
  await page.evaluate(() => (document.body.dataset.state = "waiting"));
  await action();
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 240000 });
  return page.evaluate(() => ({ state: document.body.dataset.state, kind: document.body.dataset.errorKind, message: document.getElementById("message").textContent }));
}

/** Pairs browser notes with CLI notes of the same pitch whose onsets lie within one frame. */
function assertSameNotes(browserNotes, cliNotes) {
  assert.equal(browserNotes.length, cliNotes.length, "note count");
  const unused = [...browserNotes];
  for (const note of cliNotes) {
    const index = unused.findIndex((n) => n.pitch === note.pitch && Math.abs(n.onset - note.onset) <= FRAME_SECONDS + 1e-6);
    assert.ok(index >= 0, `no browser note for the CLI's pitch ${note.pitch} at ${note.onset} s`);
    unused.splice(index, 1);
  }
}

test("one track: the page's notes are the CLI's", async () => {
  const cli = cliTranscription(1);
  await page.selectOption("#instruments", "1");
  const end = await transcribeWith(() => page.setInputFiles("#file-input", EXAMPLE));
  assert.equal(end.state, "done", end.message);
  const result = await page.evaluate(() => window.timbrescribe.result);
  assert.equal(result.tracks.length, 1);
  assert.equal(result.tracks[0].name, cli.tracks[0].name);
  assertSameNotes(result.notes, cli.tracks[0].notes);
});

test(`separated, K=${SEPARATED_K}: the CLI's notes in ${SEPARATED_K} tracks; MIDI, JSON and CSV download`, async () => {
  const cli = cliTranscription(SEPARATED_K);
  const end = await transcribeWith(() => page.selectOption("#instruments", String(SEPARATED_K)));
  assert.equal(end.state, "done", end.message);
  const result = await page.evaluate(() => window.timbrescribe.result);
  assert.equal(result.tracks.length, SEPARATED_K);
  assert.deepEqual(result.tracks.map((t) => t.name), cli.tracks.map((t) => t.name));
  assertSameNotes(result.notes, cli.tracks.flatMap((t) => t.notes));
  // notes in the same tracks as the CLI's, as far as the same notes were found
  const cliTrackOf = new Map(cli.tracks.flatMap((t) => t.notes.map((n) => [`${n.pitch}@${n.onset.toFixed(3)}`, t.name])));
  const agreeing = result.tracks.flatMap((t) => t.notes.filter((n) => cliTrackOf.get(`${n.pitch}@${n.onset.toFixed(3)}`) === t.name));
  console.log(`# notes in the same track as the CLI's: ${agreeing.length} of ${result.notes.length}`);

  const saved = {};
  for (const [button, extension] of [["#download-midi", "mid"], ["#download-json", "json"], ["#download-csv", "csv"]]) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
    assert.equal(download.suggestedFilename(), `example.${extension}`);
    saved[extension] = join(OUT, `example.${extension}`);
    await download.saveAs(saved[extension]);
  }
  const midi = readMidi(new Uint8Array(readFileSync(saved.mid)));
  const instruments = midi.slice(1);
  assert.deepEqual(instruments.map((t) => t.name), cli.tracks.map((t) => t.name));
  const channels = instruments.map((t) => t.channel);
  assert.equal(new Set(channels).size, channels.length, "one channel per track");
  assert.ok(!channels.includes(9), "never the drum channel 10");
  instruments.forEach((track, i) => {
    const expected = result.tracks[i].notes;
    assert.equal(track.notes.length, expected.length);
    track.notes.forEach((note, j) => {
      assert.equal(note.pitch, expected[j].pitch);
      assert.ok(Math.abs(note.onset - expected[j].onset) <= 1 / 960 + 1e-9);
    });
  });
  const json = JSON.parse(readFileSync(saved.json, "utf8"));
  assert.deepEqual(Object.keys(json).sort(), Object.keys(cli).sort());
  assert.deepEqual(Object.keys(json.tracks[0]).sort(), Object.keys(cli.tracks[0]).sort());
  assert.deepEqual(Object.keys(json.tracks[0].notes[0]).sort(), Object.keys(cli.tracks[0].notes[0]).sort());
  const header = readFileSync(saved.csv, "utf8").split(/\r?\n/)[0];
  assert.equal(header, "track,onset,offset,pitch,velocity,track_confidence");

  await page.screenshot({ path: join(OUT, "page.png"), fullPage: true });
});

test("the piano roll zooms and scrolls; playback moves the cursor", async () => {
  const view = () => page.evaluate(() => ({ start: window.timbrescribe.roll.start, span: window.timbrescribe.roll.span, cursor: window.timbrescribe.roll.cursor }));
  const before = await view();
  await page.click("#zoom-in");
  await page.click("#zoom-in");
  const zoomed = await view();
  assert.ok(zoomed.span < before.span / 2, `span ${zoomed.span} after zooming in from ${before.span}`);
  await page.$eval("#scroll", (input) => {
    input.value = "1000";
    input.dispatchEvent(new Event("input"));
  });
  const scrolled = await view();
  assert.ok(Math.abs(scrolled.start + scrolled.span - before.span) < 1e-6, "scrolled to the end");
  await page.click("#zoom-fit");
  assert.equal((await view()).span, before.span);
  await page.click("#zoom-in");
  await page.click("#play");
  await page.waitForFunction(() => window.timbrescribe.roll.cursor > 0.5, null, { timeout: 10000 });
  await page.screenshot({ path: join(OUT, "page-playing.png") });
  await page.click("#play");
  assert.equal((await view()).cursor, null);
});

/** A 16-bit mono WAV of `seconds` of `value` at `rate` Hz (8-bit when `bits` is 8). */
function wav(seconds, rate, value = 0, bits = 16) {
  const n = Math.round(seconds * rate);
  const bytesPerSample = bits / 8;
  const buffer = Buffer.alloc(44 + n * bytesPerSample);
  buffer.write("RIFF", 0);
  buffer.writeUInt32LE(36 + n * bytesPerSample, 4);
  buffer.write("WAVEfmt ", 8);
  buffer.writeUInt32LE(16, 16);
  buffer.writeUInt16LE(1, 20);
  buffer.writeUInt16LE(1, 22);
  buffer.writeUInt32LE(rate, 24);
  buffer.writeUInt32LE(rate * bytesPerSample, 28);
  buffer.writeUInt16LE(bytesPerSample, 32);
  buffer.writeUInt16LE(bits, 34);
  buffer.write("data", 36);
  buffer.writeUInt32LE(n * bytesPerSample, 40);
  if (bits === 8) buffer.fill(128 + value, 44);
  else for (let i = 0; i < n; i++) buffer.writeInt16LE(value, 44 + 2 * i);
  return buffer;
}

test("a file that is not audio: a clear message", async () => {
  const file = { name: "notes.wav", mimeType: "audio/wav", buffer: Buffer.from("these are not samples\n".repeat(40)) };
  const end = await transcribeWith(() => page.setInputFiles("#file-input", file));
  assert.equal(end.state, "error");
  assert.equal(end.kind, "unreadable");
  assert.match(end.message, /Cannot read notes\.wav as audio/);
  assert.equal(await page.isHidden("#result"), true);
});

test("silence: a clear message", async () => {
  const file = { name: "silence.wav", mimeType: "audio/wav", buffer: wav(2, 22050) };
  const end = await transcribeWith(() => page.setInputFiles("#file-input", file));
  assert.equal(end.state, "error");
  assert.equal(end.kind, "silent");
  assert.match(end.message, /silence\.wav is silent/);
});

test("a recording too long for the page: a clear message", async () => {
  const file = { name: "long.wav", mimeType: "audio/wav", buffer: wav(31 * 60, 8000, 10, 8) };
  const end = await transcribeWith(() => page.setInputFiles("#file-input", file));
  assert.equal(end.state, "error");
  assert.equal(end.kind, "too-long");
  assert.match(end.message, /long\.wav lasts 31 min 0 s: the page takes at most 30 minutes/);
});

test("a static copy (timbrescribe web --export) runs from a plain file server, on one thread", async () => {
  const site = join(scratch, "site");
  execFileSync(TIMBRESCRIBE, ["web", "--export", site], { stdio: "ignore" });
  const plain = await startPlainServer(site);
  const other = await browser.context.newPage();
  try {
    await other.goto(plain.url);
    await other.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: 60000 });
    assert.equal(await other.evaluate(() => self.crossOriginIsolated), false);
    await other.selectOption("#instruments", "1");
    await other.setInputFiles("#file-input", EXAMPLE);
    await other.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 240000 });
    const result = await other.evaluate(() => window.timbrescribe.result);
    assert.equal(result.threads, 1);
    assertSameNotes(result.notes, cliTranscription(1).tracks[0].notes);
  } finally {
    await other.close();
    await plain.stop();
  }
});

/** Python's own http.server over `folder` (no special headers): {url, stop()}. */
function startPlainServer(folder) {
  const python = `${ROOT}.venv/bin/python`;
  const child = spawn(python, ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", folder], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/port (\d+)/);
      if (match) resolve({ url: `http://127.0.0.1:${match[1]}/`, stop: () => new Promise((done) => { child.once("exit", done); child.kill(); }) });
    });
    child.once("exit", (code) => reject(new Error(`http.server exited with ${code}`)));
  });
}
