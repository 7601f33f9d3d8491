"""Tests of lenient FITS reading (SIMPLE = 'T', no SIMPLE, images in any extension) and of
event lists (recognised in place of a map; binned by coolcore.data.events.bin_events).

References are independent of the code: files built byte by byte, ``np.histogram2d`` on a
bin grid found by brute force, and a celestial WCS built by hand from the TC* keywords.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from coolcore.data.events import bin_events, is_event_list
from coolcore.data.formats import format_of
from coolcore.data.images import image_header_info, read_image
from coolcore.errors import ImageError, UsageError

RNG = np.random.default_rng(2024)
IMAGE = (np.arange(6 * 5, dtype=np.float32).reshape(6, 5) + 1.0) * 0.5


def _error(call, path: Path | str, match: str, kind=ImageError) -> str:
    """``call(path)`` raises ``kind`` with one line that starts with the path and has ``match``."""
    with pytest.raises(kind) as info:
        call(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    assert match in msg, msg
    return msg


def _fits_bytes(hdul: fits.HDUList) -> bytes:
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    return buffer.getvalue()


def _string_simple(raw: bytes) -> bytes:
    """The same FITS bytes with the SIMPLE card's logical T replaced by the string 'T'."""
    card = raw[:80]
    assert card[:30] == b"SIMPLE  =                    T", card
    new_card = b"SIMPLE  =                  'T'" + card[30:]
    assert len(new_card) == 80
    return new_card + raw[80:]


# ------------------------------------------------------------------- SIMPLE
def _string_simple_file(tmp_path: Path, name: str = "t.fits") -> Path:
    header = fits.Header({"PIXKPC": 7.5, "BUNIT": "counts"})
    raw = _string_simple(_fits_bytes(fits.HDUList([fits.PrimaryHDU(IMAGE, header=header)])))
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def test_string_simple_is_read(tmp_path):
    path = _string_simple_file(tmp_path)
    assert path.read_bytes()[:30] == b"SIMPLE  =                  'T'"
    # astropy alone refuses it (this is what makes the retry necessary)
    with pytest.raises(OSError, match="SIMPLE"), fits.open(path):
        pass
    np.testing.assert_array_equal(read_image(path), IMAGE.astype(np.float64))
    info = image_header_info(path)
    assert info["pixel_kpc"] == 7.5 and info["bunit"] == "counts"


def test_string_simple_without_suffix_gzip_and_truncated(tmp_path):
    path = _string_simple_file(tmp_path, "map.dat")
    assert format_of(path) == "fits"
    np.testing.assert_array_equal(read_image(path), IMAGE)
    packed = tmp_path / "t.fits.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(read_image(packed), IMAGE)
    ftz = tmp_path / "t.FTZ"  # XMM's name for a gzipped FITS file: recognised by its bytes
    ftz.write_bytes(packed.read_bytes())
    assert format_of(ftz) == "fits"
    np.testing.assert_array_equal(read_image(ftz), IMAGE)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:2900])
    _error(read_image, cut, "truncated FITS file")


def test_file_starting_with_xtension_is_read(tmp_path):
    raw = fits.ImageHDU(IMAGE).header.tostring().encode("ascii")
    raw += IMAGE.astype(">f4").tobytes()
    raw += b"\0" * (-len(raw) % 2880)
    path = tmp_path / "ext_only.fits"
    path.write_bytes(raw)
    assert raw[:9] == b"XTENSION="
    np.testing.assert_array_equal(read_image(path), IMAGE)
    path.rename(tmp_path / "ext_only.bin")
    assert format_of(tmp_path / "ext_only.bin") == "fits"


def test_no_simple_card_and_garbage_give_one_line(tmp_path):
    raw = _fits_bytes(fits.HDUList([fits.PrimaryHDU(IMAGE)]))
    blank = tmp_path / "blank.fits"
    blank.write_bytes(b" " * 80 + raw[80:])  # the SIMPLE card is gone, the rest is FITS
    msg = _error(read_image, blank, "not a readable FITS file")
    assert "SIMPLE" in msg and "ignore_missing_simple" not in msg
    _error(image_header_info, blank, "not a readable FITS file")
    text = tmp_path / "text.fits"
    text.write_text("this is not a FITS file\n" * 300)
    _error(read_image, text, "not a readable FITS file")
    gz = tmp_path / "notfits.bin"
    gz.write_bytes(gzip.compress(b"hello" * 100))
    _error(read_image, gz, "a gzip file that holds no FITS file")


# --------------------------------------------------------- images anywhere
def test_image_after_a_binary_table(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="A", format="E", array=[1.0, 2.0])])
    image = fits.ImageHDU(IMAGE, header=fits.Header({"PIXKPC": 3.0}), name="SCI")
    path = tmp_path / "after_table.fits"
    fits.HDUList([fits.PrimaryHDU(), table, image]).writeto(path)
    np.testing.assert_array_equal(read_image(path), IMAGE)
    assert image_header_info(path)["pixel_kpc"] == 3.0


def test_tile_compressed_image_after_a_binary_table(tmp_path):
    data = RNG.integers(1, 5000, size=(40, 33)).astype(np.int32)  # RICE_1 is lossless on ints
    table = fits.BinTableHDU.from_columns([fits.Column(name="A", format="J", array=[1, 2])])
    comp = fits.CompImageHDU(data, header=fits.Header({"PIXKPC": 2.5}), compression_type="RICE_1")
    path = tmp_path / "comp.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), table, comp]).writeto(path)
    np.testing.assert_array_equal(read_image(path), data.astype(np.float64))
    assert image_header_info(path)["pixel_kpc"] == 2.5


def test_two_dimensional_image_preferred_to_a_one_dimensional_one(tmp_path):
    path = tmp_path / "spectrum_then_map.fits"
    fits.HDUList([fits.PrimaryHDU(np.arange(1.0, 9.0)), fits.ImageHDU(IMAGE)]).writeto(path)
    np.testing.assert_array_equal(read_image(path), IMAGE)


# ---------------------------------------------------------------- event lists
TC = {  # sky WCS of the X (column 1) and Y (column 2) columns, Chandra-like
    "X": {"TCTYP": "RA---TAN", "TCRVL": 150.1, "TCDLT": -1.366666e-4, "TCRPX": 4096.5},
    "Y": {"TCTYP": "DEC--TAN", "TCRVL": 62.3, "TCDLT": 1.366666e-4, "TCRPX": 4096.5},
}


def _event_hdul(
    x, y, energy=None, *, unit="eV", column="ENERGY", name="EVENTS", tc=True
) -> fits.HDUList:
    cols = [fits.Column(name="X", format="E", array=x), fits.Column(name="Y", format="E", array=y)]
    if energy is not None:
        cols.append(fits.Column(name=column, format="E", array=energy, unit=unit))
    cols.append(fits.Column(name="TIME", format="D", array=np.arange(len(x), dtype=float)))
    table = fits.BinTableHDU.from_columns(cols, name=name)
    if tc:
        for n, axis in ((1, "X"), (2, "Y")):
            for key, value in TC[axis].items():
                table.header[f"{key}{n}"] = value
    table.header["OBJECT"] = "Abell 0000"
    table.header["REDSHIFT"] = 0.0523
    return fits.HDUList([fits.PrimaryHDU(), table])


def _events(n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (4096.5 + 40.0 * RNG.standard_normal(n)).astype(np.float32)
    y = (4000.0 + 25.0 * RNG.standard_normal(n)).astype(np.float32)
    x[:3] = [4096.5, 4100.5, 4101.0]  # on bin edges of a 4-pixel grid, and between
    energy = RNG.uniform(100.0, 8000.0, n).astype(np.float32)  # eV
    energy[:4] = [500.0, 2000.0, 499.0, 1999.0]  # band ends: 0.5 kept, 2.0 not
    return x.astype(np.float64), y.astype(np.float64), energy.astype(np.float64)


def _edges(values: np.ndarray, b: float) -> np.ndarray:
    """Brute force: the grid 0.5 + k b (k integer) from the last edge <= min to the first > max."""
    lattice = 0.5 + b * np.arange(-20000, 20000, dtype=np.float64)
    lo = lattice[lattice <= values.min()].max()
    hi = lattice[lattice > values.max()].min()
    return lattice[(lattice >= lo) & (lattice <= hi)]


def _column_wcs() -> WCS:
    """The event list's sky WCS, built by hand from the TC* keywords."""
    w = WCS(naxis=2)
    w.wcs.ctype = [TC["X"]["TCTYP"], TC["Y"]["TCTYP"]]
    w.wcs.crval = [TC["X"]["TCRVL"], TC["Y"]["TCRVL"]]
    w.wcs.cdelt = [TC["X"]["TCDLT"], TC["Y"]["TCDLT"]]
    w.wcs.crpix = [TC["X"]["TCRPX"], TC["Y"]["TCRPX"]]
    w.wcs.cunit = ["deg", "deg"]
    return w


@pytest.mark.parametrize("b", [4.0, 2.5, 1.0])
def test_bin_events_matches_histogram2d(tmp_path, b):
    x, y, energy = _events()
    path = tmp_path / "evt2.fits"
    _event_hdul(x, y, energy).writeto(path)
    counts, header = bin_events(path, b)  # default band 0.5-2 keV
    keep = (energy >= 500.0) & (energy < 2000.0)
    assert keep[0] and not keep[1]
    xe, ye = _edges(x[keep], b), _edges(y[keep], b)
    expected, _, _ = np.histogram2d(y[keep], x[keep], bins=[ye, xe])
    assert counts.shape == expected.shape and counts.dtype == np.float64
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == keep.sum() == header["NEVENTS"]
    assert header["OBJECT"] == "Abell 0000" and header["REDSHIFT"] == pytest.approx(0.0523)

    everything, _ = bin_events(path, b, energy_kev=None)
    assert everything.sum() == x.size


def test_binned_wcs_maps_events_to_the_same_sky_position(tmp_path):
    x, y, energy = _events()
    path = tmp_path / "evt2.fits"
    _event_hdul(x, y, energy).writeto(path)
    b = 4.0
    counts, header = bin_events(path, b, energy_kev=None)
    image_wcs, column_wcs = WCS(header), _column_wcs()
    assert list(image_wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    xe, ye = _edges(x, b), _edges(y, b)
    for k in (0, 1, 2, 17, int(np.argmax(x)), int(np.argmin(y))):
        ra, dec = column_wcs.all_pix2world(x[k], y[k], 1)
        px, py = image_wcs.all_world2pix(ra, dec, 1)
        # the event's position in binned pixels: 1-based, bin i spans [i + 0.5, i + 1.5]
        np.testing.assert_allclose([px, py], [(x[k] - xe[0]) / b + 0.5, (y[k] - ye[0]) / b + 0.5])
        i, j = np.searchsorted(xe, x[k], "right") - 1, np.searchsorted(ye, y[k], "right") - 1
        assert i + 0.5 <= px <= i + 1.5 and j + 0.5 <= py <= j + 1.5
        assert counts[j, i] >= 1
        # the centre of that bin is the same sky position in both WCSs
        centre = column_wcs.all_pix2world((xe[i] + xe[i + 1]) / 2, (ye[j] + ye[j + 1]) / 2, 1)
        np.testing.assert_allclose(image_wcs.all_pix2world(i + 1, j + 1, 1), centre, atol=1e-10)


@pytest.mark.parametrize(
    ("column", "unit", "scale"), [("ENERGY", "keV", 1e-3), ("PI", "eV", 1.0), ("PI", None, 1.0)]
)
def test_energy_units(tmp_path, column, unit, scale):
    x, y, energy = _events()
    path = tmp_path / "evt.fits"
    _event_hdul(x, y, energy * scale, unit=unit, column=column).writeto(path)
    counts, header = bin_events(path, 4.0, energy_kev=(0.5, 2.0))
    keep = (energy >= 500.0) & (energy < 2000.0)
    assert counts.sum() == keep.sum()
    assert header["EMINKEV"] == 0.5 and header["EMAXKEV"] == 2.0


def test_no_energy_column_keeps_every_event_and_no_tc_gives_no_wcs(tmp_path):
    x, y, _ = _events(500)
    path = tmp_path / "evt.fits"
    _event_hdul(x, y, None, tc=False).writeto(path)
    counts, header = bin_events(path, 8.0)
    assert counts.sum() == 500 and "no ENERGY or PI column" in str(header["HISTORY"])
    assert "CTYPE1" not in header and "EMINKEV" not in header


def test_event_list_is_recognised_by_read_image(tmp_path):
    x, y, energy = _events(1234)
    path = tmp_path / "acisf_evt2.fits"
    _event_hdul(x, y, energy).writeto(path)
    expected = (
        f"{path}: an event list (EVENTS table, 1234 events), not an image; bin it first "
        "(coolcore predict ... --bin 4 bins it on sky X/Y in 4-pixel bins)"
    )
    for call in (read_image, image_header_info, lambda p: read_image(p, hdu="EVENTS")):
        with pytest.raises(ImageError) as info:
            call(path)
        assert str(info.value) == expected
    assert is_event_list(path)
    other = tmp_path / "photons.fits"
    _event_hdul(x[:10], y[:10], energy[:10], name="PHOTONS").writeto(other)
    _error(read_image, other, "an event list (PHOTONS table, 10 events), not an image")
    assert is_event_list(other)


def test_is_event_list_false_for_other_files(tmp_path):
    image = tmp_path / "map.fits"
    fits.PrimaryHDU(IMAGE).writeto(image)
    x, y, energy = _events(50)
    both = tmp_path / "both.fits"
    hdul = _event_hdul(x, y, energy)
    fits.HDUList([fits.PrimaryHDU(IMAGE), hdul[1]]).writeto(both)
    npy = tmp_path / "map.npy"
    np.save(npy, IMAGE)
    text = tmp_path / "junk.fits"
    text.write_text("junk\n")
    for path in (image, both, npy, text, tmp_path / "missing.fits", tmp_path):
        assert not is_event_list(path), path
    np.testing.assert_array_equal(read_image(both), IMAGE)  # an image wins over events


def test_bin_events_errors(tmp_path):
    x, y, energy = _events(300)
    good = tmp_path / "evt.fits"
    _event_hdul(x, y, energy).writeto(good)
    for bad in (0, -4, math.nan, math.inf, "four"):
        with pytest.raises(UsageError) as info:
            bin_events(good, bad)
        assert "\n" not in str(info.value) and "bin size" in str(info.value)
    for band in ((2.0, 0.5), (-1.0, 2.0), (0.5, math.nan)):
        with pytest.raises(UsageError, match="energy band"):
            bin_events(good, 4, energy_kev=band)

    no_xy = tmp_path / "noxy.fits"
    cols = [fits.Column(name=n, format="E", array=energy) for n in ("RA", "DEC", "ENERGY")]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="EVENTS")]).writeto(
        no_xy
    )
    _error(lambda p: bin_events(p, 4), no_xy, "the EVENTS table has no X and Y columns")
    _error(read_image, no_xy, "an event list (EVENTS table, 300 events)")

    hard = tmp_path / "hard.fits"
    _event_hdul(x, y, np.full_like(energy, 5000.0)).writeto(hard)
    _error(lambda p: bin_events(p, 4), hard, "no events in 0.5-2 keV (of 300 events")

    chan = tmp_path / "chan.fits"
    _event_hdul(x, y, energy / 14.6, unit="chan", column="PI").writeto(chan)
    _error(lambda p: bin_events(p, 4), chan, "the PI column is in 'chan', not an energy unit")
    assert bin_events(chan, 4, energy_kev=None)[0].sum() == 300

    wide = tmp_path / "wide.fits"
    _event_hdul(np.array([1.0, 60000.0]), np.array([1.0, 2.0]), None).writeto(wide)
    _error(lambda p: bin_events(p, 1), wide, "over 8192 pixels a side")

    image = tmp_path / "map.fits"
    fits.PrimaryHDU(IMAGE).writeto(image)
    _error(lambda p: bin_events(p, 4), image, "no event list")
    npy = tmp_path / "map.npy"
    np.save(npy, IMAGE)
    _error(lambda p: bin_events(p, 4), npy, "not a FITS file")
    _error(lambda p: bin_events(p, 4), tmp_path / "missing.fits", "no such file")


def test_string_simple_event_list(tmp_path):
    """The two features together: an event list whose SIMPLE card is the string 'T'."""
    x, y, energy = _events(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = _string_simple(_fits_bytes(_event_hdul(x, y, energy)))
    path = tmp_path / "sim_evt.fits"
    path.write_bytes(raw)
    assert is_event_list(path)
    _error(read_image, path, "an event list (EVENTS table, 200 events)")
    counts, _ = bin_events(path, 2.0, energy_kev=None)
    assert counts.sum() == 200
