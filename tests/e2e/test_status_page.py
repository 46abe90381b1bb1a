"""The hub's status page and /status.json, served beside /metrics, rendered
by a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from test_prometheus import AGENCY, get, start_pair, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADER_BLUE = (0x24, 0x3B, 0x53)  # the table header's background in hub/web.py


@pytest.fixture(scope="module")
def pair(module_launch):
    """A hub and a caught-up node shared by this module's tests."""
    return start_pair(module_launch, module_launch.directory)


def base_url(hub) -> str:
    return f"http://127.0.0.1:{hub.config['metrics']['port']}"


def test_status_json_shows_each_agency_with_its_sync_state(pair):
    hub, _ = pair

    def connected_and_caught_up():  # a busy machine may show the node between two publish streams
        report = json.loads(get(f"{base_url(hub)}/status.json"))
        rows = report["agencies"]
        return report if rows and rows[0]["connected"] and rows[0]["node_backlog_events"] == 0 else None

    report = wait_for(connected_and_caught_up, "the node connected and caught up")
    assert report["hub_running"] is True
    [row] = report["agencies"]
    assert row["agency"] == AGENCY
    assert row["connected"] is True
    assert row["node_backlog_events"] == 0
    assert row["hub_position"] > 0 and row["latest_event_id"] > 0
    assert row["last_event_time"]
    assert row["lag_seconds"] == 0  # caught up and idle: no lag, however old the newest event
    assert row["source_clock_ahead_seconds"] == 0
    assert row["catalog_entries_overdue"] == 0  # no catalog entry yet
    assert row["share_requests_overdue"] == 0  # no share request yet
    assert row["offline_fallback"] is None


def test_status_page_refreshes_itself_and_metrics_are_still_served(pair):
    hub, _ = pair
    for path in ("/", "/status"):
        html = get(base_url(hub) + path)
        assert '<meta http-equiv="refresh" content="5">' in html
        assert f'<tr data-agency="{AGENCY}">' in html
    assert f'exchange_hub_position{{agency="{AGENCY}"}}' in get(f"{base_url(hub)}/metrics")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base_url(hub)}/nothing", timeout=10)
    assert missing.value.code == 404


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


def png_pixels(path: Path) -> list[tuple[int, ...]]:
    """The RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, offset = {}, 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunks.setdefault(kind, []).append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unexpected PNG format"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    previous, pixels = bytearray(stride), []
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        pixels += [tuple(row[x:x + channels]) for x in range(0, stride, channels)]
        previous = row
    return pixels


@pytest.mark.skipif(not CHROMIUM, reason="chromium not installed (apt-get install chromium)")
def test_chromium_renders_the_agency_table(pair, tmp_path):
    hub, _ = pair
    url = f"{base_url(hub)}/status"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'<tr data-agency="{AGENCY}"><td>{AGENCY}</td><td class="yes">yes</td>' in dom.stdout

    screenshot = tmp_path / "status.png"
    shot = chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,800", url)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    pixels = png_pixels(screenshot)
    assert len(pixels) == 1280 * 800
    assert len({p[:3] for p in pixels}) > 50, "the screenshot is (nearly) blank"
    header = sum(1 for p in pixels if p[:3] == HEADER_BLUE)
    assert header > 1000, "the table header is not on the screenshot"
