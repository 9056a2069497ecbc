#!/usr/bin/env python3
"""Measures the server against the hostile inputs of issue 14 (F1-F12).

Makes every input itself (standard library, plus sox/ffmpeg from
scripts/setup.sh and the committed fixtures), starts a fresh server for each
finding so its peak RSS is the finding's own, and prints one Markdown table
row per measurement: what was sent, what came back, server CPU seconds and
peak RSS. BENCHMARKS.md quotes the table for the binary before and after.

Usage: scripts/hostile_bench.py [--binary target/release/emotion-ai] [--only F2,F4]
"""

import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
HOST = "127.0.0.1"

# ---------------------------------------------------------------- inputs


def wav(rate, channels, bits, raw, fmt_tag=1, extra_chunks=b"", extensible_mask=None):
    block = channels * bits // 8
    if extensible_mask is None:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    else:
        guid = struct.pack("<IHH", 1, 0, 0x10) + bytes([0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71])
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, extensible_mask)
        fmt += guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def crc8(data):
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def crc16(data):
    c = 0
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


class BitWriter:
    def __init__(self):
        self.bits = []

    def put(self, value, n):
        self.bits.extend((value >> i) & 1 for i in range(n - 1, -1, -1))

    def bytes(self):
        while len(self.bits) % 8:
            self.bits.append(0)
        return bytes(int("".join(map(str, self.bits[i : i + 8])), 2) for i in range(0, len(self.bits), 8))


def utf8_number(n):
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    return bytes([0xE0 | n >> 12, 0x80 | (n >> 6) & 0x3F, 0x80 | n & 0x3F])


def flac_square(rate, channels, seconds, block=65535, declare_length=True):
    """A FLAC stream of constant-valued subframes that alternate sign every
    block: a few bytes a frame, however many samples it holds."""
    total = rate * seconds
    info = BitWriter()
    info.put(block, 16), info.put(block, 16), info.put(0, 24), info.put(0, 24)
    info.put(rate, 20), info.put(channels - 1, 3), info.put(15, 5), info.put(total if declare_length else 0, 36), info.put(0, 128)
    info = info.bytes()
    out = bytearray(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)
    frames = {}
    for f in range((total + block - 1) // block):
        size = min(block, total - f * block)
        header = bytearray(b"\xff\xf8" + bytes([0x70, (channels - 1) << 4]) + utf8_number(f) + struct.pack(">H", size - 1))
        header.append(crc8(header))
        value = 12000 if f % 2 == 0 else -12000
        if value not in frames:
            sub = BitWriter()
            for _ in range(channels):
                sub.put(0, 8), sub.put(value & 0xFFFF, 16)
            frames[value] = sub.bytes()
        frame = bytes(header) + frames[value]
        out += frame + struct.pack(">H", crc16(frame))
    return bytes(out)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_40mp_rgba16_rotated():
    side = 6324
    row = b"\x00" * (1 + side * 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    # A big-endian TIFF header with one IFD entry: Orientation (0x0112) = 6.
    exif = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, 6, 0) + b"\x00\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"eXIf", exif) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_iccp_bomb():
    side = 64
    raw = b"".join(b"\x00" + b"\x80" * side for _ in range(side))
    small = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    z = zlib.compressobj(9)
    bomb = b"".join(z.compress(bytes(1 << 20)) for _ in range(1024)) + z.flush()  # 1 GiB of zeros
    return b"\x89PNG\r\n\x1a\n" + small + png_chunk(b"iCCP", b"icc\x00\x00" + bomb) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def tiff_huge_tag_count():
    """An 8x8 grey TIFF whose first tag claims 2^30 values past the file's end."""
    pixels = bytes([50] * 64)
    entries = [(256, 3, 1, 8), (257, 3, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8), (278, 3, 1, 8), (279, 4, 1, 64)]
    ifd_at = 8 + len(pixels)
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + pixels + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + value
    out += b"\x00\x00\x00\x00"
    out[ifd_at + 2 + 4 : ifd_at + 2 + 8] = struct.pack("<I", 0x3FFFFFFF)
    return bytes(out)


def make_inputs(d):
    paths = {}

    def save(name, data):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        paths[name] = p

    save("flac_300s_384k_8ch.flac", flac_square(384000, 8, 300))
    save("flac_300s_384k_8ch_no_length.flac", flac_square(384000, 8, 300, declare_length=False))
    square = b"".join(struct.pack("<h", 32767 if (i // 40) % 2 == 0 else -32768) for i in range(48000))
    save("wav_dc_offset_3s.wav", wav(16000, 1, 16, struct.pack("<h", 16000) * 48000))
    save("wav_one_sample.wav", wav(16000, 1, 16, b"\x00\x40"))
    save("wav_nyquist_3s.wav", wav(16000, 1, 16, struct.pack("<hh", 32767, -32768) * 24000))
    save("wav_square_3s.wav", wav(16000, 1, 16, square))
    tone = bytes(int(128 + 100 * ((i // 200) % 2 * 2 - 1)) for i in range(38400))
    save("wav_64ch_384k_u8.wav", wav(384000, 64, 8, bytes(b for b in tone for _ in range(64))[: 384000 * 64 // 10]))
    save("wav_ext_64ch_mask0.wav", wav(48000, 64, 16, bytes(48000 * 64 * 2 // 10), extensible_mask=0))
    speech = open(os.path.join(FIX, "speech.wav"), "rb").read()
    pcm = speech[speech.find(b"data") + 8 :]
    save("wav_2M_empty_chunks.wav", wav(16000, 1, 16, pcm, extra_chunks=b"junk\x00\x00\x00\x00" * 2_000_000))
    save("ogg_chained_300.ogg", open(os.path.join(FIX, "speech.ogg"), "rb").read() * 300)
    save("png_40mp_rgba16_orient6.png", png_40mp_rgba16_rotated())
    save("png_iccp_bomb.png", png_iccp_bomb())
    save("tiff_huge_tag_count.tiff", tiff_huge_tag_count())
    grid = os.path.join(d, "faces_grid_12x12.jpg")
    tiler = os.path.join(ROOT, "target", "release", "examples", "face_grid")
    if not os.path.exists(tiler):
        subprocess.run(["cargo", "build", "-q", "--release", "--example", "face_grid"], cwd=ROOT, check=True)
    subprocess.run([tiler, os.path.join(FIX, "astronaut.jpg"), "12x12", "100", grid, "75,20,74,74"], check=True)
    paths["faces_grid_12x12.jpg"] = grid
    return paths


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, binary, port, nofile=None, extra=()):
        self.port = port
        limits = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", f"{HOST}:{port}", *extra], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limits
        )
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1).read()
                break
            except Exception:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited: {self.tail()}")
                time.sleep(0.05)
        # Peak RSS counts from here: the models are loaded.
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")
        self.cpu0 = self.cpu()

    def cpu(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self, key):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(key):
                return int(line.split()[1]) // 1024
        return 0

    def usage(self):
        return {"cpu_s": round(self.cpu() - self.cpu0, 2), "peak_mb": self.status("VmHWM"), "rss_mb": self.status("VmRSS")}

    def tail(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def close(self):
        self.proc.kill()
        self.proc.wait()


def post(port, path, files, headers=None, timeout=120):
    """curl's multipart upload: (status, JSON body or text, seconds)."""
    args = ["curl", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code} %{time_total}"]
    for field, p in files:
        args += ["-F", f"{field}=@{p}"]
    for h in headers or []:
        args += ["-H", h]
    out = subprocess.run(args + [f"http://{HOST}:{port}{path}"], capture_output=True).stdout.decode(errors="replace")
    body, _, tail = out.rpartition("\n")
    code, seconds = (tail.split() + ["000", "0"])[:2]
    return int(code), body, float(seconds)


def summary(body):
    try:
        j = json.loads(body)
    except ValueError:
        return body[:80].replace("\n", " ").replace("|", "/")
    if "code" in j:
        return f"`{j['code']}`: {j.get('message', '')[:90]}"
    if "faces" in j:
        return f"{len(j['faces'])} faces" + (f", {j['faces_left_out']} left out" if j.get("faces_left_out") else "")
    if "duration_seconds" in j:
        return f"{j.get('emotion', {}).get('label', '?')}, {j['duration_seconds']:.2f} s"
    return body[:80]


ROWS = []


def row(finding, what, answer, usage=None):
    usage = usage or {}
    ROWS.append((finding, what, answer, usage.get("cpu_s", ""), usage.get("peak_mb", "")))
    print(f"| {finding} | {what} | {answer} | {usage.get('cpu_s', '')} | {usage.get('peak_mb', '')} |", flush=True)


def one_upload(args, finding, name, path, label=None):
    s = Server(args.binary, args.port)
    try:
        code, body, secs = post(args.port, "/api/v1/predict", [("file", path)])
        row(finding, label or name, f"{code} {summary(body)} ({secs:.1f} s)", s.usage())
    finally:
        s.close()


# ---------------------------------------------------------------- findings


def f1(args, inputs):
    s = Server(args.binary, args.port, nofile=1024)
    socks = []
    try:
        for _ in range(1100):
            try:
                c = socket.create_connection((HOST, args.port), timeout=2)
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                socks.append(c)
            except OSError:
                break
        time.sleep(2)
        t = time.time()
        r = subprocess.run(["curl", "-s", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}:{args.port}/healthz"], capture_output=True, text=True)
        row("F1", f"`/healthz` while 1,100 half-sent headers are held (1,024 open files)", f"{r.stdout} after {time.time() - t:.1f} s", s.usage())
    finally:
        for c in socks:
            c.close()
        s.close()
    s = Server(args.binary, args.port)
    try:
        idle = [socket.create_connection((HOST, args.port)) for _ in range(50)]
        slow = []
        for _ in range(50):
            c = socket.create_connection((HOST, args.port))
            c.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\n")
            slow.append(c)
        deadline = time.time() + 40
        for k in range(8):  # one header line every 5 s
            time.sleep(5)
            for c in slow:
                try:
                    c.sendall(f"X-{k}: y\r\n".encode())
                except OSError:
                    pass

        def closed(c):
            c.setblocking(False)
            try:
                return c.recv(1 << 16) is not None
            except BlockingIOError:
                return False
            except OSError:
                return True

        row("F1", "50 idle + 50 slowloris sockets (a header line every 5 s), after 40 s", f"{sum(map(closed, idle))} idle and {sum(map(closed, slow))} slowloris closed", s.usage())
        assert time.time() <= deadline + 5
        for c in idle + slow:
            c.close()
    finally:
        s.close()


def f2(args, inputs):
    flac = inputs["flac_300s_384k_8ch.flac"]
    one_upload(args, "F2", "flac", flac, "61 KB FLAC: 300 s, 384 kHz, 8 channels")
    one_upload(args, "F2", "flac", inputs["flac_300s_384k_8ch_no_length.flac"], "the same FLAC, its length not declared")
    s = Server(args.binary, args.port)
    try:
        results = []

        def send(path, tag):
            code, body, secs = post(args.port, "/api/v1/predict", [("file", path)])
            results.append((tag, code, secs))

        threads = [threading.Thread(target=send, args=(flac, "bomb")) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1)
        good = [threading.Thread(target=send, args=(os.path.join(FIX, "astronaut.jpg"), "good")) for _ in range(10)]
        for t in good:
            t.start()
        for t in threads + good:
            t.join()
        ok = [r for r in results if r[0] == "good" and r[1] == 200]
        slowest = max((r[2] for r in results if r[0] == "good"), default=0)
        row("F2", "4 of those FLACs, then 10 photos alongside", f"{len(ok)}/10 photos 200 (slowest {slowest:.1f} s)", s.usage())
    finally:
        s.close()


def f3(args, inputs):
    s = Server(args.binary, args.port)
    try:
        body = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + b"\xff\xd8\xff" + bytes(19_900_000) + b"\r\n--B--\r\n"
        head = f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        socks, refused = [], 0
        for _ in range(64):
            c = socket.create_connection((HOST, args.port))
            try:
                c.sendall(head + body[:-10])
            except OSError:
                refused += 1
            socks.append(c)
        time.sleep(5)
        u = s.usage()
        answered = 0
        for c in socks:
            c.setblocking(False)
            try:
                if c.recv(64).startswith(b"HTTP/1.1 503"):
                    answered += 1
            except OSError:
                pass
        healthz = urllib.request.urlopen(f"http://{HOST}:{args.port}/healthz", timeout=10).status
        row("F3", "64 uploads of 19.9 MB held 10 bytes short", f"RSS held {u['rss_mb']} MB; {answered} answered 503 at once; /healthz {healthz}", u)
        for c in socks:
            c.close()
    finally:
        s.close()


def f4(args, inputs):
    one_upload(args, "F4", "png", inputs["png_40mp_rgba16_orient6.png"], "40 MP 16-bit RGBA PNG, EXIF rotation 6 (330 KB)")
    one_upload(args, "F4", "grid", inputs["faces_grid_12x12.jpg"], "a 12x12 grid of the astronaut fixture's face (1200x1200 px)")
    one_upload(args, "F4", "iccp", inputs["png_iccp_bomb.png"], "64x64 PNG with a 1 GiB zlib-bomb iCCP profile")
    s = Server(args.binary, args.port)
    try:
        threads = [threading.Thread(target=post, args=(args.port, "/api/v1/predict", [("file", inputs["faces_grid_12x12.jpg"])])) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        row("F4", "six grids at once", "", s.usage())
    finally:
        s.close()


def f5_to_f12(args, inputs):
    for finding, name, label in [
        ("F5", "tiff_huge_tag_count.tiff", "TIFF whose first tag claims 2^30 values"),
        ("F6", "ogg_chained_300.ogg", "300 chained Ogg streams (300 x the speech fixture, 660 s)"),
        ("F7", "wav_dc_offset_3s.wav", "WAV: 3 s DC offset"),
        ("F7", "wav_one_sample.wav", "WAV: one sample"),
        ("F7", "wav_nyquist_3s.wav", "WAV: 3 s Nyquist tone"),
        ("F7", "wav_square_3s.wav", "WAV: 3 s full-scale square wave"),
        ("F8", "wav_64ch_384k_u8.wav", "WAV: 64 channels, 384 kHz"),
        ("F8", "wav_ext_64ch_mask0.wav", "WAVE_FORMAT_EXTENSIBLE: 64 channels, mask 0"),
        ("F12", "wav_2M_empty_chunks.wav", "WAV with 2 million empty chunks (16 MB)"),
    ]:
        one_upload(args, finding, name, inputs[name], label)
    s = Server(args.binary, args.port)
    try:
        photo = os.path.join(FIX, "astronaut.jpg")
        for accept in ["text/html;q=0, application/json", "application/json, text/html;q=0.1", "application/JSON"]:
            args_ = ["curl", "-s", "-o", "/dev/null", "-w", "%{content_type}", "-H", f"Accept: {accept}", "-F", f"file=@{photo}", f"http://{HOST}:{args.port}/predict"]
            row("F9", f"`Accept: {accept}`", subprocess.run(args_, capture_output=True, text=True).stdout)
        head = "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        for label, extra in [
            ("`Content-Length: 10^15`, no body", "Content-Length: 1000000000000000\r\n"),
            ("`Expect: 100-continue` with 30 MiB declared", "Content-Length: 31457280\r\nExpect: 100-continue\r\n"),
        ]:
            t = time.time()
            c = socket.create_connection((HOST, args.port), timeout=70)
            c.sendall((head + extra + "\r\n").encode())
            try:
                first = c.recv(200).split(b"\r\n")[0].decode()
            except OSError as e:
                first = repr(e)
            row("F10", label, f"{first} after {time.time() - t:.1f} s")
            c.close()
        for method, path in [("GET", "/static/nope.js"), ("DELETE", "/static/app.js"), ("GET", "/assets/README.md"), ("GET", "/assets/nope.mp3")]:
            out = subprocess.run(["curl", "-s", "-X", method, "-o", "-", "-w", "\n%{http_code} %{content_type}", f"http://{HOST}:{args.port}{path}"], capture_output=True, text=True).stdout
            body, _, tail = out.rpartition("\n")
            row("F11", f"{method} `{path}`", f"{tail} {summary(body) if body else '(empty body)'}")
    finally:
        s.close()


FINDINGS = {"F1": f1, "F2": f2, "F3": f3, "F4": f4, "F5": f5_to_f12}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "emotion-ai"))
    p.add_argument("--port", type=int, default=18801)
    p.add_argument("--only", default="F1,F2,F3,F4,F5", help="findings to run (F5 runs F5-F12)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as d:
        inputs = make_inputs(d)
        print("| finding | input | answer | server CPU s | server peak RSS MB |")
        print("|---|---|---|---|---|")
        for f in args.only.split(","):
            FINDINGS[f](args, inputs)


if __name__ == "__main__":
    sys.exit(main())
