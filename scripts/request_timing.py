#!/usr/bin/env python3
"""Times one upload against several running servers, taking turns.

The servers answer the same request in alternation, so the machine's drift
falls on all alike; prints each server's median and quartiles (client-side
wall time of POST /api/v1/predict, one kept-alive connection each).

    python3 scripts/request_timing.py ROUNDS FILE URL [URL ...]
"""
import http.client
import statistics
import sys
import time
import urllib.parse


def body_of(path):
    boundary = "----emotion-ai-timing"
    with open(path, "rb") as f:
        data = f.read()
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def main():
    rounds, path, urls = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    body, content_type = body_of(path)
    conns = []
    for url in urls:
        u = urllib.parse.urlparse(url)
        conns.append(http.client.HTTPConnection(u.hostname, u.port, timeout=60))
    times = [[] for _ in urls]
    for r in range(rounds + 5):
        for i, conn in enumerate(conns):
            started = time.perf_counter()
            conn.request("POST", "/api/v1/predict", body=body,
                         headers={"Content-Type": content_type, "Accept": "application/json"})
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1e3
            if response.status != 200:
                sys.exit(f"{urls[i]} answered {response.status}")
            if r >= 5:
                times[i].append(elapsed)
    for url, t in zip(urls, times):
        q = statistics.quantiles(t, n=4)
        print(f"{url}: median {statistics.median(t):.1f} ms (quartiles {q[0]:.1f}-{q[2]:.1f}) over {rounds}")


if __name__ == "__main__":
    main()
