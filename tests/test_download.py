"""forge data download against a local archive on 127.0.0.1 (pytest-httpserver): real-format zips and
.CHECKSUM files in data.binance.vision's layout; no test needs the internet."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from forge.core.errors import ConfigError
from forge.data.discovery import load_symbol_bars
from forge.data.download import download_files, parse_checksum, plan_downloads

pytest.importorskip("pytest_httpserver")

TODAY = date(2024, 8, 15)


def kline_csv(year: int, month: int, day: int = 1, n: int = 30, header: bool = False) -> bytes:
    """``n`` 1-minute bars from ``year-month-day`` 00:00 UTC in Binance's 12-column kline format."""
    t0 = int(datetime(year, month, day, tzinfo=timezone.utc).timestamp() * 1000)
    rows = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
            "taker_buy_quote_volume,ignore"] if header else []
    for i in range(n):
        t = t0 + 60_000 * i
        p = 100.0 + i * 0.1
        rows.append(f"{t},{p:.2f},{p + 0.5:.2f},{p - 0.5:.2f},{p + 0.1:.2f},1.5,{t + 59_999},150.0,12,0.7,70.0,0")
    return ("\n".join(rows) + "\n").encode()


def zipped(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name.replace(".zip", ".csv"), payload)
    return buf.getvalue()


def checksum(name: str, blob: bytes) -> bytes:
    return f"{hashlib.sha256(blob).hexdigest()}  {name}\n".encode()


def serve(httpserver, path: str, blob: bytes, *, bad_sum: bool = False) -> None:
    """Serve ``blob`` at ``/data/<path>`` and its .CHECKSUM (wrong one when ``bad_sum``)."""
    name = path.rsplit("/", 1)[1]
    httpserver.expect_request(f"/data/{path}").respond_with_data(blob, content_type="application/zip")
    body = checksum(name, blob + b"x" if bad_sum else blob)
    httpserver.expect_request(f"/data/{path}.CHECKSUM").respond_with_data(body)


def month_path(sym: str, ym: str, market: str = "spot") -> str:
    seg = "spot" if market == "spot" else "futures/um"
    return f"{seg}/monthly/klines/{sym}/1m/{sym}-1m-{ym}.zip"


def zip_requests(httpserver) -> list[str]:
    return [r.path for r, _ in httpserver.log if r.path.endswith(".zip")]


# --------------------------------------------------------------------------- the plan


def test_plan_monthly_then_daily_for_the_current_month_and_funding(tmp_path):
    plan = plan_downloads(["filusdt"], "futures-um", "2024-07", "2024-08", tmp_path, today=TODAY,
                          base_url="http://x")
    klines = [f for f in plan if f.kind == "klines"]
    assert klines[0].url == "http://x/data/futures/um/monthly/klines/FILUSDT/1m/FILUSDT-1m-2024-07.zip"
    assert klines[0].dest == tmp_path / "futures-um" / "FILUSDT" / "1m" / "FILUSDT-1m-2024-07.zip"
    days = [f.period for f in klines[1:]]
    assert days == [f"2024-08-{d:02d}" for d in range(1, 15)]  # up to yesterday
    assert klines[1].url == "http://x/data/futures/um/daily/klines/FILUSDT/1m/FILUSDT-1m-2024-08-01.zip"
    fund = [f for f in plan if f.kind == "fundingRate"]
    assert [f.period for f in fund] == ["2024-07"]  # the current month's file does not exist yet
    assert fund[0].url == "http://x/data/futures/um/monthly/fundingRate/FILUSDT/FILUSDT-fundingRate-2024-07.zip"
    assert fund[0].dest == tmp_path / "futures-um" / "FILUSDT" / "fundingRate" / "FILUSDT-fundingRate-2024-07.zip"
    spot = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-02", tmp_path, today=TODAY)
    assert [f.kind for f in spot] == ["klines", "klines"]
    assert spot[0].url == "https://data.binance.vision/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip"


@pytest.mark.parametrize("kw, msg", [
    (dict(market="coin-m"), "--market"), (dict(start="2024-13"), "--from"), (dict(start="2024-03", end="2024-02"),
                                                                               "after --to"),
    (dict(end="2024-09"), "after the current month"), (dict(symbols=["BTC/USDT"]), "symbol"),
    (dict(funding=True), "only for --market futures-um"), (dict(interval="7m"), "--interval"),
])
def test_plan_refuses_bad_requests(tmp_path, kw, msg):
    args = dict(symbols=["BTCUSDT"], market="spot", start="2024-01", end="2024-02") | kw
    with pytest.raises(ConfigError, match=msg):
        plan_downloads(args.pop("symbols"), args.pop("market"), args.pop("start"), args.pop("end"), tmp_path,
                       today=TODAY, **args)


def test_parse_checksum():
    h = "ab" * 32
    assert parse_checksum(f"{h}  X.zip\n", "X.zip") == h
    assert parse_checksum(f"{h.upper()} *X.zip", "X.zip") == h
    with pytest.raises(ValueError, match="names"):
        parse_checksum(f"{h}  Y.zip", "X.zip")
    with pytest.raises(ValueError, match="malformed"):
        parse_checksum("<html>not found</html>", "X.zip")


# --------------------------------------------------------------------------- downloads


def test_download_verifies_writes_the_loader_layout_and_resumes(httpserver, tmp_path):
    for ym, (y, m) in (("2024-01", (2024, 1)), ("2024-02", (2024, 2))):
        serve(httpserver, month_path("BTCUSDT", ym), zipped(f"BTCUSDT-1m-{ym}.zip", kline_csv(y, m)))
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-02", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    rep = download_files(plan, today=TODAY)
    assert [r.status for r in rep.results] == ["downloaded", "downloaded"] and rep.ok
    folder = tmp_path / "spot" / "BTCUSDT" / "1m"
    assert sorted(p.name for p in folder.iterdir()) == [
        "BTCUSDT-1m-2024-01.zip", "BTCUSDT-1m-2024-01.zip.CHECKSUM", "BTCUSDT-1m-2024-02.zip",
        "BTCUSDT-1m-2024-02.zip.CHECKSUM"]
    bars, cov = load_symbol_bars((str(tmp_path),), "BTCUSDT")  # the layout --data reads
    assert bars.height == 60 and len(cov.files) == 2
    # resume: a second run fetches nothing
    httpserver.clear_log()
    rep2 = download_files(plan, today=TODAY)
    assert [r.status for r in rep2.results] == ["kept", "kept"]
    assert httpserver.log == []
    # a file damaged on disk is fetched again
    (folder / "BTCUSDT-1m-2024-01.zip").write_bytes(b"damaged")
    rep3 = download_files(plan, today=TODAY)
    assert [r.status for r in rep3.results] == ["downloaded", "kept"]


def test_bad_checksum_keeps_nothing_and_says_so_in_one_line(httpserver, tmp_path):
    serve(httpserver, month_path("BTCUSDT", "2024-01"), zipped("BTCUSDT-1m-2024-01.zip", kline_csv(2024, 1)),
          bad_sum=True)
    r = CliRunner().invoke(cli.forge_app, ["data", "download", "BTCUSDT", "--from", "2024-01", "--to", "2024-01",
                                           "--dest", str(tmp_path), "--base-url", httpserver.url_for("/")])
    assert r.exit_code == 3, r.output
    lines = [ln for ln in r.output.splitlines() if "does not match" in ln]
    assert len(lines) == 1 and "BTCUSDT spot klines 2024-01" in lines[0] and "nothing kept" in lines[0]
    assert "Traceback" not in r.output
    folder = tmp_path / "spot" / "BTCUSDT" / "1m"
    assert not folder.exists() or list(folder.iterdir()) == []  # no zip, no .part, no .CHECKSUM


def test_429_and_503_are_retried_honouring_retry_after(httpserver, tmp_path):
    path = month_path("BTCUSDT", "2024-01")
    blob = zipped("BTCUSDT-1m-2024-01.zip", kline_csv(2024, 1))
    httpserver.expect_oneshot_request(f"/data/{path}").respond_with_data("slow down", status=429,
                                                                         headers={"Retry-After": "7"})
    httpserver.expect_oneshot_request(f"/data/{path}").respond_with_data("busy", status=503)
    serve(httpserver, path, blob)
    waits: list[float] = []
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-01", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    rep = download_files(plan, today=TODAY, backoff=0.5, sleep=waits.append)
    assert rep.results[0].status == "downloaded"
    assert waits == [7.0, 1.0]  # Retry-After honoured, then backoff * 2**1
    assert zip_requests(httpserver) == [f"/data/{path}"] * 3


def test_retries_exhausted_fail_without_keeping_a_file(httpserver, tmp_path):
    path = month_path("BTCUSDT", "2024-01")
    httpserver.expect_request(f"/data/{path}.CHECKSUM").respond_with_data("banned", status=418)
    waits: list[float] = []
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-01", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    rep = download_files(plan, today=TODAY, retries=3, backoff=1.0, max_backoff=3.0, sleep=waits.append)
    assert rep.results[0].status == "failed" and "HTTP 418" in rep.results[0].message
    assert "after 4 attempts" in rep.results[0].message
    assert waits == [1.0, 2.0, 3.0]  # exponential, capped
    assert not rep.ok


def test_missing_month_is_one_line_and_the_rest_downloads(httpserver, tmp_path):
    serve(httpserver, month_path("FILUSDT", "2024-02", "futures-um"),
          zipped("FILUSDT-1m-2024-02.zip", kline_csv(2024, 2, header=True)))
    fund = "futures/um/monthly/fundingRate/FILUSDT/FILUSDT-fundingRate-2024-02.zip"
    serve(httpserver, fund, zipped("FILUSDT-fundingRate-2024-02.zip",
                                   b"calc_time,funding_interval_hours,last_funding_rate\n"
                                   b"1706745600000,8,0.0001\n1706774400000,8,0.00012\n"))
    httpserver.expect_request("/data/futures/um/monthly/fundingRate/FILUSDT/FILUSDT-fundingRate-2024-01.zip.CHECKSUM"
                              ).respond_with_data("", status=404)
    httpserver.expect_request(f"/data/{month_path('FILUSDT', '2024-01', 'futures-um')}.CHECKSUM").respond_with_data(
        "", status=404)
    r = CliRunner().invoke(cli.forge_app, ["data", "download", "FILUSDT", "--market", "futures-um", "--from",
                                           "2024-01", "--to", "2024-02", "--dest", str(tmp_path), "--base-url",
                                           httpserver.url_for("/")])
    assert r.exit_code == 0, r.output
    missing = [ln for ln in r.output.splitlines() if "not in the archive (HTTP 404" in ln]
    assert len(missing) == 2 and any("klines 2024-01" in ln for ln in missing)
    assert (tmp_path / "futures-um" / "FILUSDT" / "1m" / "FILUSDT-1m-2024-02.zip").is_file()
    assert (tmp_path / "futures-um" / "FILUSDT" / "fundingRate" / "FILUSDT-fundingRate-2024-02.zip").is_file()
    bars, _ = load_symbol_bars((str(tmp_path),), "FILUSDT")
    assert bars.height == 30


def test_a_symbol_with_no_file_at_all_is_an_error(httpserver, tmp_path):
    httpserver.expect_request(f"/data/{month_path('NOPEUSDT', '2024-01')}.CHECKSUM").respond_with_data("", status=404)
    r = CliRunner().invoke(cli.forge_app, ["data", "download", "NOPEUSDT", "--from", "2024-01", "--to", "2024-01",
                                           "--dest", str(tmp_path), "--base-url", httpserver.url_for("/")])
    assert r.exit_code == 3
    assert "no kline file in the archive for NOPEUSDT spot" in r.output


def test_interrupted_part_is_resumed_with_a_range_request(httpserver, tmp_path):
    from werkzeug import Response

    path = month_path("BTCUSDT", "2024-01")
    blob = zipped("BTCUSDT-1m-2024-01.zip", kline_csv(2024, 1, n=500))
    ranges: list[str | None] = []

    def handler(request):
        rng = request.headers.get("Range")
        ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return Response(blob[start:], status=206, content_type="application/zip")
        return Response(blob, status=200, content_type="application/zip")

    httpserver.expect_request(f"/data/{path}").respond_with_handler(handler)
    httpserver.expect_request(f"/data/{path}.CHECKSUM").respond_with_data(checksum(path.rsplit("/", 1)[1], blob))
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-01", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    plan[0].dest.parent.mkdir(parents=True)
    plan[0].part_path.write_bytes(blob[:1000])  # what an interrupted run left
    rep = download_files(plan, today=TODAY)
    assert rep.results[0].status == "downloaded" and rep.results[0].nbytes == len(blob) - 1000
    assert ranges == ["bytes=1000-"]
    assert plan[0].dest.read_bytes() == blob and not plan[0].part_path.exists()


def test_unpublished_last_month_falls_back_to_daily_files_which_the_month_later_supersedes(httpserver, tmp_path):
    today = date(2024, 8, 3)  # July's monthly file is not published yet
    httpserver.expect_oneshot_request(f"/data/{month_path('BTCUSDT', '2024-07')}.CHECKSUM").respond_with_data(
        "", status=404)
    for d in range(1, 32):
        p = f"spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-07-{d:02d}.zip"
        serve(httpserver, p, zipped(p.rsplit("/", 1)[1], kline_csv(2024, 7, d, n=5)))
    for d in (1, 2):
        p = f"spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-{d:02d}.zip"
        serve(httpserver, p, zipped(p.rsplit("/", 1)[1], kline_csv(2024, 8, d, n=5)))
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-07", "2024-08", tmp_path, today=today,
                          base_url=httpserver.url_for("/"))
    rep = download_files(plan, today=today, concurrency=2)
    st = [r.status for r in rep.results]
    assert st[0] == "missing" and "daily files" in rep.results[0].message
    assert st.count("downloaded") == 33 and rep.ok
    bars, _ = load_symbol_bars((str(tmp_path),), "BTCUSDT")
    assert bars.height == 33 * 5
    # later, the monthly file exists: it replaces July's daily files on disk
    serve(httpserver, month_path("BTCUSDT", "2024-07"), zipped("BTCUSDT-1m-2024-07.zip", kline_csv(2024, 7, n=50)))
    plan2 = plan_downloads(["BTCUSDT"], "spot", "2024-07", "2024-07", tmp_path, today=date(2024, 8, 10),
                           base_url=httpserver.url_for("/"))
    assert download_files(plan2, today=date(2024, 8, 10)).results[0].status == "downloaded"
    names = sorted(p.name for p in (tmp_path / "spot" / "BTCUSDT" / "1m").glob("*.zip"))
    assert names == ["BTCUSDT-1m-2024-07.zip", "BTCUSDT-1m-2024-08-01.zip", "BTCUSDT-1m-2024-08-02.zip"]


def test_at_most_concurrency_downloads_at_once(httpserver, tmp_path):
    import threading
    import time as _t

    from werkzeug import Response

    blobs = {f"2023-{m:02d}": zipped(f"ETHUSDT-1m-2023-{m:02d}.zip", kline_csv(2023, m, n=5)) for m in range(1, 9)}

    def handler(request):
        _t.sleep(0.05)
        return Response(blobs[request.path.rsplit("-1m-", 1)[1][:7]], content_type="application/zip")

    for ym, blob in blobs.items():
        p = month_path("ETHUSDT", ym)
        httpserver.expect_request(f"/data/{p}").respond_with_handler(handler)
        httpserver.expect_request(f"/data/{p}.CHECKSUM").respond_with_data(checksum(p.rsplit("/", 1)[1], blob))
    plan = plan_downloads(["ETHUSDT"], "spot", "2023-01", "2023-08", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    live, peak, lock = [0], [0], threading.Lock()

    def on_event(kind, f, value):
        with lock:
            if kind == "start":
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            elif kind == "done":
                live[0] -= 1

    rep = download_files(plan, today=TODAY, concurrency=3, on_event=on_event)
    assert rep.count("downloaded") == 8
    assert peak[0] == 3  # files in flight at once: the cap, reached
    with pytest.raises(ConfigError, match="--concurrency"):
        download_files(plan, concurrency=0)


def test_downloaded_spot_zip_matches_the_loader_for_header_and_microsecond_files(httpserver, tmp_path):
    """A 2025 spot file (µs timestamps) written by the downloader loads as ms bars."""
    raw = kline_csv(2025, 1, n=10).decode().splitlines()
    us = []
    for ln in raw:
        f = ln.split(",")
        f[0], f[6] = str(int(f[0]) * 1000), str(int(f[6]) * 1000 + 999)
        us.append(",".join(f))
    blob = zipped("BTCUSDT-1m-2025-01.zip", ("\n".join(us) + "\n").encode())
    serve(httpserver, month_path("BTCUSDT", "2025-01"), blob)
    plan = plan_downloads(["BTCUSDT"], "spot", "2025-01", "2025-01", tmp_path, today=date(2025, 3, 1),
                          base_url=httpserver.url_for("/"))
    assert download_files(plan, today=date(2025, 3, 1)).ok
    bars, cov = load_symbol_bars((str(tmp_path),), "BTCUSDT")
    assert cov.files[0].time_unit == "us" and int(bars["open_time"][0]) == 1735689600000
    assert Path(cov.files[0].path).parent == tmp_path / "spot" / "BTCUSDT" / "1m"


def test_a_complete_part_file_answered_416_is_restarted(httpserver, tmp_path):
    from werkzeug import Response

    path = month_path("BTCUSDT", "2024-01")
    blob = zipped("BTCUSDT-1m-2024-01.zip", kline_csv(2024, 1, n=100))

    def handler(request):
        if request.headers.get("Range"):
            return Response("", status=416)
        return Response(blob, status=200, content_type="application/zip")

    httpserver.expect_request(f"/data/{path}").respond_with_handler(handler)
    httpserver.expect_request(f"/data/{path}.CHECKSUM").respond_with_data(checksum(path.rsplit("/", 1)[1], blob))
    plan = plan_downloads(["BTCUSDT"], "spot", "2024-01", "2024-01", tmp_path, today=TODAY,
                          base_url=httpserver.url_for("/"))
    plan[0].dest.parent.mkdir(parents=True)
    plan[0].part_path.write_bytes(blob + b"trailing junk")  # longer than the file: Range not satisfiable
    rep = download_files(plan, today=TODAY)
    assert rep.results[0].status == "downloaded"
    assert plan[0].dest.read_bytes() == blob and not plan[0].part_path.exists()
