"""``timbrescribe web``: serve the browser page (web/ in the source tree) and the shipped model files
on a local address, or copy them into a folder for any static host.

The page itself runs everything in the browser (onnxruntime-web); this server only hands out files:
``/`` and the files under web/ (its node_modules excepted), and ``/models/<file>`` from the package's
weights folder. Every answer carries the cross-origin isolation headers (COOP/COEP), so browsers
let the page use threads. Paths that lead outside those folders are refused. Ctrl-C stops it.
"""
from __future__ import annotations

import argparse
import errno
import http.server
import shutil
import sys
import urllib.parse
from functools import partial
from pathlib import Path

from timbrescribe.errors import UserError
from timbrescribe.inference import WEIGHTS_DIR

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
MODELS_PREFIX = "/models/"
# Files the page needs from the weights folder (model graphs, cards, tuned settings).
MODEL_SUFFIXES = (".onnx", ".json")
HIDDEN_PARTS = ("node_modules", "tests")  # folders of web/ that are not served
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# What the page needs from onnxruntime-web (copied into web/vendor by `make web-vendor`).
VENDOR_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--export", metavar="DIR", type=Path,
                        help="instead of serving, copy the page and the model files into DIR for a static host")


def resolve(path: str, web_dir: Path = WEB_DIR, models_dir: Path = WEIGHTS_DIR) -> Path | None:
    """The file a URL path names, or None when it names nothing servable (missing, a folder, hidden,
    or outside the web and models folders)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    if "\x00" in path:
        return None
    if path == "/":
        path = "/index.html"
    if path.startswith(MODELS_PREFIX):
        root, relative = models_dir, path[len(MODELS_PREFIX):]
        if not relative.endswith(MODEL_SUFFIXES):
            return None
    else:
        root, relative = web_dir, path.lstrip("/")
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target == root:
        return None
    if _hidden(target.relative_to(root)):
        return None
    return target if target.is_file() else None


def _hidden(relative: Path) -> bool:
    """Whether a path under web/ is kept from visitors and exports: hidden files, node_modules, tests."""
    return any(part in HIDDEN_PARTS or part.startswith(".") for part in relative.parts)


class PageHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the page's files with their content types and the isolation headers."""

    server_version = "timbrescribe-web"
    web_dir = WEB_DIR
    models_dir = WEIGHTS_DIR

    def __init__(self, *args, web_dir: Path = WEB_DIR, models_dir: Path = WEIGHTS_DIR, quiet: bool = False, **kwargs):
        self.web_dir, self.models_dir, self.quiet = web_dir, models_dir, quiet
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        target = resolve(self.path, self.web_dir, self.models_dir)
        if target is None:
            self._headers(404, "text/plain; charset=utf-8", 10)
            if with_body:
                self.wfile.write(b"not found\n")
            return
        data = target.read_bytes()
        self._headers(200, CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream"), len(data))
        if with_body:
            self.wfile.write(data)

    def _headers(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-cache")
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def missing_vendor_files(web_dir: Path = WEB_DIR) -> list[str]:
    return [name for name in VENDOR_FILES if not (web_dir / "vendor" / name).is_file()]


def make_server(host: str, port: int, web_dir: Path = WEB_DIR, models_dir: Path = WEIGHTS_DIR,
                quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server bound to (host, port); UserError when the address cannot be used."""
    if not 0 <= port <= 65535:
        raise UserError(f"port must lie in 0..65535, got {port}")
    if not (web_dir / "index.html").is_file():
        raise UserError(f"the page is not there: {web_dir / 'index.html'} (run from a source checkout)")
    handler = partial(PageHandler, web_dir=web_dir, models_dir=models_dir, quiet=quiet)
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use (another server?): choose another with --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    server.daemon_threads = True
    return server


def export(target: Path, web_dir: Path = WEB_DIR, models_dir: Path = WEIGHTS_DIR) -> list[Path]:
    """Copy the page (without node_modules and tests), its vendor files and the model files into
    ``target``; returns the files written."""
    missing = missing_vendor_files(web_dir)
    if missing:
        raise UserError(f"web/vendor lacks {', '.join(missing)}: run `make web-vendor` first")
    written = []
    for source in sorted(web_dir.rglob("*")):
        relative = source.relative_to(web_dir)
        if source.is_file() and not _hidden(relative) and relative.name not in ("package.json", "package-lock.json"):
            written.append(_copy(source, target / relative))
    for source in sorted(models_dir.iterdir()):
        if source.is_file() and source.suffix in MODEL_SUFFIXES:
            written.append(_copy(source, target / "models" / source.name))
    return written


def _copy(source: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return destination


def run(args: argparse.Namespace) -> int:
    if args.export is not None:
        written = export(args.export)
        print(f"wrote {len(written)} files to {args.export}: serve that folder as static files "
              "(send the COOP/COEP headers of this server to let the page use threads)")
        return 0
    server = make_server(args.host, args.port)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    missing = missing_vendor_files()
    if missing:
        print(f"timbrescribe: warning: web/vendor lacks {', '.join(missing)}; the page cannot run the "
              "models until `make web-vendor` copies them", file=sys.stderr)
    print(f"serving the timbrescribe page on http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
