// Times the page in headless Chromium: node measure.js URL K FILE... prints one JSON line per
// file: {file, k, duration, decodeSeconds, workerSeconds, totalSeconds, notes, tracks, threads}.
// The first file is transcribed once more at the start, unmeasured (model sessions warm up).
import { launch } from "./chromium.js";

const [url, k, ...files] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  await page.selectOption("#instruments", k);
  for (const [index, file] of [files[0], ...files].entries()) {
    await page.evaluate(() => (document.body.dataset.state = "waiting"));
    await page.setInputFiles("#file-input", file);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 900000 });
    const r = await page.evaluate(() => {
      const result = window.timbrescribe.result;
      return result && {
        duration: result.durationSeconds, decodeSeconds: result.decodeSeconds, workerSeconds: result.seconds,
        totalSeconds: result.totalSeconds, notes: result.notes.length, tracks: result.tracks.length, threads: result.threads,
      };
    });
    if (!r) throw new Error(`${file}: ${await page.textContent("#message")}`);
    if (index > 0) console.log(JSON.stringify({ file, k, ...r }));
  }
} finally {
  await browser.close();
}
