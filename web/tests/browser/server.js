// Starts `timbrescribe web --port 0` for a test and reads the address it prints.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const TIMBRESCRIBE = process.env.TIMBRESCRIBE_BIN || `${ROOT}.venv/bin/timbrescribe`;

/** {url, stop()} of a running page server. */
export function startServer() {
  const child = spawn(TIMBRESCRIBE, ["web", "--port", "0"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let errors = "";
  child.stderr.on("data", (chunk) => (errors += chunk));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${errors}`)), 30000);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/http:\/\/[^\s/]+:\d+\//);
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[0],
          stop: () =>
            new Promise((done) => {
              child.once("exit", done);
              child.kill("SIGINT");
            }),
        });
      }
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code}: ${errors}`)));
  });
}
