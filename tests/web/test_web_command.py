"""`timbrescribe web`: the page and the model files with their content types and the isolation
headers; nothing outside the two folders; a clear error for a port in use; Ctrl-C stops it;
--export writes a static copy."""
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from timbrescribe import web_command
from timbrescribe.cli import main
from timbrescribe.errors import UserError


@pytest.fixture()
def folders(tmp_path):
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "vendor").mkdir()
    (web / "node_modules" / "x").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>t</title>")
    (web / "js" / "app.js").write_text("export {};")
    (web / "vendor" / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm\1\0\0\0")
    (web / "vendor" / "ort.wasm.min.mjs").write_text("export {};")
    (web / "vendor" / "ort-wasm-simd-threaded.mjs").write_text("export {};")
    (web / "node_modules" / "x" / "secret.js").write_text("no")
    models = tmp_path / "weights"
    models.mkdir()
    (models / "agnostic.onnx").write_bytes(b"onnx")
    (models / "agnostic.card.json").write_text("{}")
    (models / "notes.txt").write_text("not served")
    (tmp_path / "secret.txt").write_text("outside")
    return web, models


@pytest.fixture()
def server(folders):
    web, models = folders
    server = web_command.make_server("127.0.0.1", 0, web, models, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def get(server, path, method="GET"):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    connection.request(method, path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/js/app.js", "text/javascript; charset=utf-8"),
        ("/vendor/ort.wasm.min.mjs", "text/javascript; charset=utf-8"),
        ("/vendor/ort-wasm-simd-threaded.wasm", "application/wasm"),
        ("/models/agnostic.onnx", "application/octet-stream"),
        ("/models/agnostic.card.json", "application/json"),
    ],
)
def test_serves_the_page_and_the_models(server, path, content_type):
    response, body = get(server, path)
    assert response.status == 200
    assert response.getheader("Content-Type") == content_type
    assert int(response.getheader("Content-Length")) == len(body) > 0
    assert response.getheader("Cross-Origin-Opener-Policy") == "same-origin"
    assert response.getheader("Cross-Origin-Embedder-Policy") == "require-corp"


def test_head_answers_without_a_body(server):
    response, body = get(server, "/models/agnostic.onnx", method="HEAD")
    assert response.status == 200 and body == b""
    assert response.getheader("Content-Length") == "4"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt", "/%2e%2e/secret.txt", "/js/../../secret.txt", "/models/../secret.txt",
        "/models/%2e%2e/web/index.html", "/models/notes.txt", "/node_modules/x/secret.js",
        "/%2fetc%2fpasswd", "//etc/passwd", "/missing.js", "/js", "/models/", "/index.html%00.js",
    ],
)
def test_refuses_paths_outside_the_folders(server, path):
    response, body = get(server, path)
    assert response.status == 404
    assert b"outside" not in body and b"no" != body


def test_a_port_in_use_is_a_clear_error(folders):
    web, models = folders
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            web_command.make_server("127.0.0.1", port, web, models)


def test_the_command_reports_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["web", "--port", str(port)]) == 2
    assert f"timbrescribe: error: port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_ctrl_c_stops_the_server_cleanly():
    process = subprocess.Popen(
        [sys.executable, "-m", "timbrescribe.cli", "web", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert "serving the timbrescribe page on http://127.0.0.1:" in line
        address = line.split("http://", 1)[1].split("/", 1)[0]
        connection = http.client.HTTPConnection(address, timeout=10)
        connection.request("GET", "/models/agnostic.card.json")
        assert connection.getresponse().status == 200
        connection.close()
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


def test_export_writes_a_static_copy(folders, tmp_path):
    web, models = folders
    target = tmp_path / "site"
    written = web_command.export(target, web, models)
    names = sorted(str(path.relative_to(target)) for path in written)
    assert names == [
        "index.html", "js/app.js", "models/agnostic.card.json", "models/agnostic.onnx",
        "vendor/ort-wasm-simd-threaded.mjs", "vendor/ort-wasm-simd-threaded.wasm", "vendor/ort.wasm.min.mjs",
    ]


def test_export_needs_the_vendor_files(folders, tmp_path):
    web, models = folders
    (web / "vendor" / "ort-wasm-simd-threaded.wasm").unlink()
    with pytest.raises(UserError, match="make web-vendor"):
        web_command.export(tmp_path / "site", web, models)


def test_the_real_page_and_models_resolve():
    assert web_command.resolve("/") == web_command.WEB_DIR / "index.html"
    assert web_command.resolve("/js/worker.js") == web_command.WEB_DIR / "js" / "worker.js"
    for name in ("agnostic.onnx", "agnostic.energy.onnx", "separation.onnx", "separation.energy.onnx",
                 "agnostic.card.json", "separation.card.json", "decoder.json", "separation.decoder.json",
                 "clustering.json"):
        assert web_command.resolve(f"/models/{name}") == web_command.WEIGHTS_DIR / name
    assert web_command.resolve("/package.json") is not None  # harmless, but tests and modules are not
    assert web_command.resolve("/tests/fixtures.test.js") is None
    assert web_command.resolve("/node_modules/onnxruntime-web/package.json") is None
