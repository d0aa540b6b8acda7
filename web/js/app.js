// The page: file in, transcription in a worker, piano roll, playback, downloads.

import { decodeFile, InputError } from "./audio_input.js";
import { tracksToCsv, tracksToJson, tracksToMidi } from "./outputs.js";
import { PianoRoll, TRACK_COLOURS } from "./pianoroll.js";
import { Player } from "./playback.js";

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const roll = new PianoRoll($("roll"), $("scroll"));
const player = new Player();
const pending = new Map();
let nextId = 1;
let config = null;
let file = null;
let decoded = null; // {buffer, mono, duration} of the current file
let result = null;

// state for people and for the browser tests: loading, ready, working, done, error
function setState(state) {
  document.body.dataset.state = state;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function call(message, transfer = [], onProgress = null) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ ...message, id }, transfer);
  });
}

worker.onmessage = (event) => {
  const { type, id } = event.data;
  const waiting = pending.get(id);
  if (!waiting) return;
  if (type === "progress") return waiting.onProgress?.(event.data.done, event.data.total);
  pending.delete(id);
  if (type === "error") waiting.reject(new Error(event.data.message));
  else waiting.resolve(event.data);
};
worker.onerror = (event) => {
  say(`The transcription worker failed to start: ${event.message || "see the browser console"}. Is web/vendor there (make web-vendor)?`, true);
  setState("error");
};

function showProgress(done, total, label) {
  $("progress-box").hidden = false;
  $("progress").value = total ? done / total : 0;
  $("progress-label").textContent = label;
}

async function choose(chosen) {
  if (!chosen) return;
  if (document.body.dataset.state === "working") {
    say("Still transcribing the previous file: drop the new one when it is done.");
    return;
  }
  file = chosen;
  decoded = null;
  $("file-name").textContent = chosen.name;
  $("run").disabled = !config;
  await transcribe();
}

function instrumentsChoice() {
  const value = $("instruments").value;
  return value === "auto" ? null : Number(value);
}

async function transcribe() {
  if (!file || !config) return;
  player.stop();
  $("run").disabled = true;
  setState("working");
  say("");
  try {
    showProgress(0, 1, "decoding the audio…");
    const card = config.agnostic;
    const started = performance.now();
    decoded ??= await decodeFile(file, card.sample_rate, card.hop);
    const decodeSeconds = (performance.now() - started) / 1000;
    const audio = decoded.mono.slice(); // the worker takes its own copy
    showProgress(0, 1, "running the model…");
    const answer = await call({ type: "transcribe", audio, instruments: instrumentsChoice() }, [audio.buffer], (done, total) =>
      showProgress(done, total, `${done <= total / 2 ? "pass 1 (energy)" : "pass 2 (notes)"}: chunk ${done} of ${total}`),
    );
    result = answer.result;
    result.decodeSeconds = decodeSeconds; // 0 when the file was decoded before
    result.totalSeconds = (performance.now() - started) / 1000;
    showResult();
    setState("done");
  } catch (err) {
    result = null;
    $("result").hidden = true;
    $("progress-box").hidden = true;
    say(err instanceof InputError ? err.message : `Transcription failed: ${err.message}`, true);
    document.body.dataset.errorKind = err instanceof InputError ? err.kind : "failed";
    setState("error");
  } finally {
    $("run").disabled = !file;
  }
}

function showResult() {
  $("progress-box").hidden = true;
  $("result").hidden = false;
  const count = result.notes.length;
  const estimated = result.instrumentsEstimated ? " (estimated)" : "";
  const speed = result.seconds ? `; ${result.seconds.toFixed(1)} s on ${result.threads} thread${result.threads > 1 ? "s" : ""} (${(result.seconds / result.durationSeconds).toFixed(3)} × real time)` : "";
  $("summary").textContent = `${file.name}: ${result.durationSeconds.toFixed(1)} s, ${count} note${count === 1 ? "" : "s"}, ${result.tracks.length} track${result.tracks.length === 1 ? "" : "s"}${estimated}${speed}`;
  if (!count) say("No notes found: the recording may be too quiet, or hold no pitched sound.");
  $("legend").replaceChildren(
    ...result.tracks.map((track, i) => {
      const item = document.createElement("span");
      item.style.setProperty("--swatch", TRACK_COLOURS[i % TRACK_COLOURS.length]);
      const confidence = track.confidence === null ? "" : `, confidence ${track.confidence.toFixed(2)}`;
      item.textContent = `${track.name} (${track.notes.length} notes${confidence})`;
      return item;
    }),
  );
  roll.setData(result.tracks, result.durationSeconds);
}

function baseName() {
  return file.name.replace(/\.[^.]+$/, "") || "transcription";
}

function download(data, type, extension) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `${baseName()}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function animateCursor() {
  const position = player.position();
  roll.setCursor(position);
  if (position === null) {
    $("play").textContent = "▶ Play original";
    return;
  }
  requestAnimationFrame(animateCursor);
}

function togglePlay() {
  if (player.playing) {
    player.stop();
    roll.setCursor(null);
    $("play").textContent = "▶ Play original";
    return;
  }
  const notes = $("synth").checked || $("synth-only").checked ? result.notes : null;
  const buffer = $("synth-only").checked ? null : decoded.buffer;
  const from = roll.cursor ?? roll.start;
  player.play(buffer, notes, from >= result.durationSeconds - 0.1 ? 0 : from);
  $("play").textContent = "■ Stop";
  animateCursor();
}

function wire() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") $("file-input").click();
  });
  $("file-input").addEventListener("change", (e) => {
    const chosen = e.target.files[0];
    e.target.value = ""; // choosing the same file again still counts
    choose(chosen);
  });
  $("run").addEventListener("click", transcribe);
  $("instruments").addEventListener("change", () => result && document.body.dataset.state !== "working" && transcribe());
  $("zoom-in").addEventListener("click", () => roll.zoom(1.5));
  $("zoom-out").addEventListener("click", () => roll.zoom(1 / 1.5));
  $("zoom-fit").addEventListener("click", () => roll.fit());
  $("play").addEventListener("click", togglePlay);
  $("download-midi").addEventListener("click", () => download(tracksToMidi(result.tracks), "audio/midi", "mid"));
  $("download-json").addEventListener("click", () => download(tracksToJson(result.tracks), "application/json", "json"));
  $("download-csv").addEventListener("click", () => download(tracksToCsv(result.tracks), "text/csv", "csv"));
}

async function start() {
  wire();
  try {
    const answer = await call({ type: "config" });
    config = answer.config;
    const isolation = self.crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated";
    $("runtime-info").textContent = `onnxruntime-web (wasm), ${answer.threads} thread${answer.threads > 1 ? "s" : ""} (${isolation}); models: ${config.agnostic.network}, ${config.separation.network}`;
    $("run").disabled = !file;
    setState("ready");
  } catch (err) {
    say(`Cannot load the models: ${err.message}`, true);
    setState("error");
  }
}

// for the browser tests and the benchmark
window.timbrescribe = {
  get result() {
    return result;
  },
  roll,
  player,
  outputs: () => ({ json: tracksToJson(result.tracks), csv: tracksToCsv(result.tracks), midi: Array.from(tracksToMidi(result.tracks)) }),
};

start();
