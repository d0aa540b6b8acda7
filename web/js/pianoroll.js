// Piano roll on a canvas: notes over time, one colour per track, zoomable (buttons, ctrl + wheel)
// and scrollable (wheel, drag, the range input), with a playback cursor.

export const TRACK_COLOURS = ["#2f6fde", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#b08900", "#5c677d"];
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const GUTTER = 42; // pixels for the pitch labels
const AXIS = 20; // pixels for the time axis

export function pitchName(pitch) {
  return `${NAMES[pitch % 12]}${Math.floor(pitch / 12) - 1}`;
}

export class PianoRoll {
  constructor(canvas, scrollInput) {
    this.canvas = canvas;
    this.scrollInput = scrollInput;
    this.tracks = [];
    this.duration = 1;
    this.start = 0; // first second shown
    this.span = 1; // seconds shown
    this.cursor = null;
    this.low = 48;
    this.high = 84;
    canvas.addEventListener("wheel", (event) => this.onWheel(event), { passive: false });
    canvas.addEventListener("pointerdown", (event) => this.onDrag(event));
    scrollInput.addEventListener("input", () => this.scrollTo((scrollInput.value / 1000) * Math.max(0, this.duration - this.span)));
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setData(tracks, duration) {
    this.tracks = tracks;
    this.duration = Math.max(duration, 0.5);
    const pitches = tracks.flatMap((t) => t.notes.map((n) => n.pitch));
    this.low = pitches.length ? Math.min(...pitches) - 3 : 48;
    this.high = pitches.length ? Math.max(...pitches) + 3 : 84;
    this.fit();
  }

  fit() {
    this.start = 0;
    this.span = this.duration;
    this.draw();
  }

  zoom(factor, anchor = this.start + this.span / 2) {
    const span = Math.min(this.duration, Math.max(0.25, this.span / factor));
    const share = (anchor - this.start) / this.span;
    this.span = span;
    this.scrollTo(anchor - share * span);
  }

  scrollTo(start) {
    this.start = Math.min(Math.max(0, start), Math.max(0, this.duration - this.span));
    this.draw();
  }

  setCursor(seconds) {
    this.cursor = seconds;
    if (seconds !== null && (seconds < this.start || seconds > this.start + this.span)) this.scrollTo(seconds - this.span * 0.1);
    else this.draw();
  }

  timeAt(x) {
    const width = this.canvas.clientWidth - GUTTER;
    return this.start + ((x - GUTTER) / width) * this.span;
  }

  onWheel(event) {
    event.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    if (event.ctrlKey || event.metaKey) this.zoom(event.deltaY < 0 ? 1.25 : 0.8, this.timeAt(event.clientX - rect.left));
    else this.scrollTo(this.start + ((event.deltaX || event.deltaY) / rect.width) * this.span);
  }

  onDrag(event) {
    const startX = event.clientX;
    const startTime = this.start;
    const width = this.canvas.clientWidth - GUTTER;
    this.canvas.setPointerCapture(event.pointerId);
    this.canvas.style.cursor = "grabbing";
    const move = (e) => this.scrollTo(startTime - ((e.clientX - startX) / width) * this.span);
    const up = () => {
      this.canvas.removeEventListener("pointermove", move);
      this.canvas.removeEventListener("pointerup", up);
      this.canvas.style.cursor = "";
    };
    this.canvas.addEventListener("pointermove", move);
    this.canvas.addEventListener("pointerup", up);
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const rows = this.high - this.low + 1;
    const rowHeight = (height - AXIS) / rows;
    const plotWidth = width - GUTTER;
    const x = (t) => GUTTER + ((t - this.start) / this.span) * plotWidth;
    const y = (pitch) => (this.high - pitch) * rowHeight;

    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    for (let pitch = this.low; pitch <= this.high; pitch++) {
      const black = [1, 3, 6, 8, 10].includes(pitch % 12);
      g.fillStyle = black ? "#eef0f4" : "#fbfcfd";
      g.fillRect(GUTTER, y(pitch), plotWidth, rowHeight);
      if (pitch % 12 === 0) {
        g.fillStyle = "#d0d5dd";
        g.fillRect(GUTTER, y(pitch) + rowHeight - 1, plotWidth, 1);
        g.fillStyle = "#475467";
        g.fillText(pitchName(pitch), 4, y(pitch) + rowHeight / 2);
      }
    }
    // time grid
    const step = niceStep(this.span / 8);
    g.fillStyle = "#475467";
    g.textBaseline = "top";
    for (let t = Math.ceil(this.start / step) * step; t <= this.start + this.span; t += step) {
      g.fillStyle = "#e4e7ec";
      g.fillRect(x(t), 0, 1, height - AXIS);
      g.fillStyle = "#475467";
      g.fillText(`${Number(t.toFixed(2))} s`, x(t) + 2, height - AXIS + 4);
    }
    // notes
    this.tracks.forEach((track, index) => {
      g.fillStyle = TRACK_COLOURS[index % TRACK_COLOURS.length];
      g.strokeStyle = "rgba(0,0,0,0.35)";
      for (const note of track.notes) {
        if (note.offset < this.start || note.onset > this.start + this.span) continue;
        const left = Math.max(GUTTER, x(note.onset));
        const right = x(note.offset);
        g.globalAlpha = 0.45 + 0.55 * (note.velocity / 127);
        g.fillRect(left, y(note.pitch) + 0.5, Math.max(1.5, right - left), Math.max(1, rowHeight - 1));
        g.globalAlpha = 1;
        if (rowHeight >= 5) g.strokeRect(left, y(note.pitch) + 0.5, Math.max(1.5, right - left), Math.max(1, rowHeight - 1));
      }
    });
    g.fillStyle = "#fff";
    g.fillRect(0, 0, GUTTER - 1, height);
    for (let pitch = this.low; pitch <= this.high; pitch++) {
      if (pitch % 12 !== 0) continue;
      g.fillStyle = "#475467";
      g.textBaseline = "middle";
      g.fillText(pitchName(pitch), 4, y(pitch) + rowHeight / 2);
    }
    if (this.cursor !== null) {
      g.fillStyle = "#d92d20";
      g.fillRect(x(this.cursor) - 1, 0, 2, height - AXIS);
    }
    const room = Math.max(0, this.duration - this.span);
    this.scrollInput.disabled = room === 0;
    this.scrollInput.value = room ? Math.round((this.start / room) * 1000) : 0;
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
