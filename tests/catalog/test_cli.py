"""`wharf cars import` and `wharf cars thumbnails --rebuild`, and the demo catalog."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from tests.catalog.imagefixtures import jpeg
from tests.catalog.webserver import Route, WebServer
from wharf.catalog import demo
from wharf.catalog.models import Car, CarImage
from wharf.cli import app
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade

runner = CliRunner()
FORMATS = ("jpeg", "webp", "avif")


@pytest.fixture
def cli_engine(tmp_path: Path, web: WebServer, monkeypatch: pytest.MonkeyPatch) -> Engine:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("WHARF_DATABASE_URL", url)
    monkeypatch.setenv("WHARF_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WHARF_OUTBOUND_ALLOW", web.allow)
    monkeypatch.delenv("WHARF_MEDIA_ROOT", raising=False)
    engine = create_db_engine(url)
    upgrade(engine)
    return engine


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _cars(engine: Engine) -> dict[str, tuple[int, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Car.title, Car.id, Car.image_sha256, Car.image_error))
        return {r.title: (r.id, r.image_sha256, r.image_error) for r in rows}


def test_a_local_csv_with_images_beside_it(
    cli_engine: Engine, tmp_path: Path, web: WebServer
) -> None:
    folder = tmp_path / "in"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "one.jpg").write_bytes(jpeg(1200, 900))
    remote = web.image("/two.jpg", jpeg(400, 300, seed=3))
    (folder / "cars.csv").write_text(
        f"title,image\nOne,pics/one.jpg\nTwo,{remote}\nThree,pics/none.jpg\n"
    )
    result = invoke("cars", "import", str(folder / "cars.csv"))
    assert result.exit_code == 0, result.output
    assert "Imported" in result.output
    assert "Rows with problems" in result.output
    assert "none.jpg cannot be read" in result.output
    cars = _cars(cli_engine)
    assert cars["One"][1] is not None
    assert cars["Two"][1] is not None
    assert cars["Three"][1] is None
    assert "cannot be read" in (cars["Three"][2] or "")
    again = invoke("cars", "import", str(folder / "cars.csv"))
    assert again.exit_code == 0
    assert _cars(cli_engine) == cars  # same ids, same images
    assert web.hits["/two.jpg"] == 1


def test_a_csv_from_a_url_and_failures(cli_engine: Engine, web: WebServer) -> None:
    url = web.add("/list.csv", Route(body=b"title\nRemote\n"))
    assert invoke("cars", "import", url).exit_code == 0
    assert "Remote" in _cars(cli_engine)
    missing = invoke("cars", "import", web.url("/nothing.csv"))
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.output
    unreadable = invoke("cars", "import", "/no/such/file.csv")
    assert unreadable.exit_code == 1
    assert "cannot be read" in unreadable.output
    refused = invoke("cars", "import", "http://169.254.169.254/cars.csv")
    assert refused.exit_code == 1
    assert "metadata" in refused.output


# A terminal as rich detects one from the environment (the CliRunner's streams are no TTY).
TERMINAL = {"TTY_COMPATIBLE": "1", "TERM": "xterm-256color", "COLUMNS": "100", "NO_COLOR": "1"}
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR_LINE = re.compile(r"^(rows|images) +.*? (\d+|\?)/(\d+|\?) \d+:\d\d:\d\d$")


def _bars(stderr: str) -> list[tuple[str, str, str]]:
    """Each (task, completed, total) the progress display drew, in order."""
    lines = re.split(r"[\r\n]", ESCAPES.sub("", stderr))
    found = (BAR_LINE.match(line.strip()) for line in lines)
    return [(m[1], m[2], m[3]) for m in found if m]


def test_the_import_shows_a_progress_bar_over_rows_and_images(
    cli_engine: Engine, tmp_path: Path, web: WebServer
) -> None:
    # One download at a time, 0.4 s each: the display redraws several times per image.
    urls = [web.image(f"/p{i}.jpg", jpeg(64, 48, seed=i), delay=0.4) for i in range(3)]
    csv = tmp_path / "cars.csv"
    csv.write_text(
        "title,image\n" + "".join(f"Car {i},{u}\n" for i, u in enumerate(urls)) + "Bare,\n"
    )
    env = {"WHARF_CARS_FETCH_CONCURRENCY": "1"}
    result = runner.invoke(app, ["cars", "import", str(csv)], env={**env, **TERMINAL})
    assert result.exit_code == 0, result.output
    assert "\x1b[1A\x1b[2K" in result.stderr  # a live display: drawn over in place
    bars = _bars(result.stderr)
    rows = [(done, total) for task, done, total in bars if task == "rows"]
    images = [(int(done), total) for task, done, total in bars if task == "images"]
    assert rows[0] == ("0", "?")  # before the CSV is read
    assert rows[-1] == ("4", "4")  # every row, with or without an image
    counted = [done for done, total in images if total == "3"]  # the three images to fetch
    assert counted[-1] == 3
    assert counted == sorted(counted)  # it only moves forward
    assert min(counted) < 3  # and was drawn while the downloads were going on
    assert "Imported" in result.stdout  # the summary goes to stdout, the bar to stderr
    assert _bars(result.stdout) == []

    # Not a terminal: no redrawing, only the final state, once. Nothing to fetch this time.
    again = runner.invoke(app, ["cars", "import", str(csv)], env={**env, "TTY_COMPATIBLE": "0"})
    assert again.exit_code == 0, again.output
    assert "\x1b" not in again.stderr
    assert _bars(again.stderr) == [("rows", "4", "4"), ("images", "0", "0")]


def test_thumbnails_rebuild_from_the_originals(
    cli_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p.jpg").write_bytes(jpeg(1600, 1200))
    (tmp_path / "c.csv").write_text("title,image\nWide,p.jpg\n")
    assert invoke("cars", "import", str(tmp_path / "c.csv")).exit_code == 0
    media = tmp_path / "var" / "media"
    before = {p.name for p in media.rglob("*") if p.is_file()}
    assert invoke("cars", "thumbnails").exit_code == 0  # without --rebuild: nothing
    monkeypatch.setenv("WHARF_CARS_WEB_WIDTH", "512")
    result = invoke("cars", "thumbnails", "--rebuild")
    assert result.exit_code == 0, result.output
    assert "Rebuilt 1 images (0 failed)" in result.output
    with cli_engine.connect() as conn:
        image = conn.execute(select(CarImage.original, CarImage.renditions)).one()
    renditions = image.renditions
    assert (renditions["web"]["width"], renditions["web"]["height"]) == (512, 384)
    assert renditions["web"]["avif"] is not None
    named = {
        image.original,
        *(made[f] for made in renditions.values() for f in made if f in FORMATS),
    }
    after = {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}
    assert after == named  # the old web files are gone, nothing else is left behind
    assert after != before


def test_the_demo_catalog_shows_thumbnails_and_real_failures(
    cli_engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None)
    record = demo.load(cli_engine, settings, tmp_path / "demo")
    counts = record["counts"]
    assert record["status"] == "done"
    assert counts["created"] == len(demo.PICTURES) + 6
    assert counts["images_fetched"] == len(demo.PICTURES)
    assert counts["images_failed"] == 5
    assert counts["skipped"] == 2
    reasons = " ".join(p["reason"] for e in record["report"] for p in e.get("problems", ()))
    for expected in ("cannot be read", "not an image", "truncated", "metadata", "loopback"):
        assert expected in reasons
    again = demo.load(cli_engine, settings, tmp_path / "demo")
    assert again["counts"]["unchanged"] == counts["created"]
    assert again["counts"]["images_fetched"] == 0
