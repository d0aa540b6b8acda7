// Playback with Web Audio: the decoded original and, optionally, the notes on simple oscillators.

const MAX_VOICES = 4000; // notes scheduled at most (the rest are skipped)

function frequency(pitch) {
  return 440 * 2 ** ((pitch - 69) / 12);
}

export class Player {
  constructor() {
    this.context = null;
    this.nodes = [];
    this.startedAt = 0;
    this.offset = 0;
    this.playing = false;
  }

  /** Play `buffer` (AudioBuffer or null) and/or `notes` from `offset` seconds. */
  play(buffer, notes, offset = 0) {
    this.stop();
    this.context ??= new AudioContext();
    const ctx = this.context;
    ctx.resume();
    const when = ctx.currentTime + 0.05;
    this.startedAt = when - offset;
    this.offset = offset;
    this.duration = buffer ? buffer.duration : Math.max(0, ...notes.map((n) => n.offset));
    if (buffer) {
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      source.start(when, offset);
      this.nodes.push(source);
    }
    if (notes) {
      const master = ctx.createGain();
      master.gain.value = 0.18;
      master.connect(ctx.destination);
      this.nodes.push(master);
      for (const note of notes.filter((n) => n.offset > offset).slice(0, MAX_VOICES)) {
        const start = when + Math.max(0, note.onset - offset);
        const end = when + (note.offset - offset);
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "triangle";
        osc.frequency.value = frequency(note.pitch);
        const level = 0.2 + 0.8 * (note.velocity / 127);
        gain.gain.setValueAtTime(0, start);
        gain.gain.linearRampToValueAtTime(level, start + 0.01);
        gain.gain.setTargetAtTime(level * 0.6, start + 0.01, 0.15);
        gain.gain.setTargetAtTime(0, end, 0.03);
        osc.connect(gain).connect(master);
        osc.start(start);
        osc.stop(end + 0.2);
        this.nodes.push(osc);
      }
    }
    this.playing = true;
  }

  /** Seconds into the recording now (null when stopped or finished). */
  position() {
    if (!this.playing) return null;
    const t = this.context.currentTime - this.startedAt;
    if (t > this.duration) {
      this.stop();
      return null;
    }
    return Math.max(t, this.offset);
  }

  stop() {
    for (const node of this.nodes) {
      try {
        if (node.stop) node.stop();
        node.disconnect();
      } catch {
        /* already stopped */
      }
    }
    this.nodes = [];
    this.playing = false;
  }
}
