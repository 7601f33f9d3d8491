"""Tests of coolcore.data.images, .formats and .catalog: maps in every format, catalogues,
and every error path."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from coolcore.data.catalog import read_catalog, resolve_data, write_catalog
from coolcore.data.images import image_header_info, read_image
from coolcore.errors import CatalogError, ImageError, UsageError

RNG = np.random.default_rng(12345)


def _assert_image_error(path: Path | str, match: str, **kwargs) -> ImageError:
    """read_image(path) raises ImageError on one line, starting with the path.

    For an HDF5 ``file.h5:dataset`` the message may start with the file alone.
    """
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    msg = str(info.value)
    assert msg.startswith(str(path).split(".h5:")[0]), msg
    assert "\n" not in msg, msg
    assert match.lower() in msg.lower(), msg
    return info.value


def _raw_fits(cards: list[str], data: bytes) -> bytes:
    """A FITS file built byte by byte: 80-char cards, END, 2880-byte blocks."""
    header = "".join(c.ljust(80) for c in [*cards, "END"]).encode("ascii")
    header += b" " * (-len(header) % 2880)
    return header + data + b"\0" * (-len(data) % 2880)


# ------------------------------------------------------------------------ FITS
def test_fits_big_endian_float(tmp_path):
    data = (RNG.random((12, 10)) * 1e3).astype(">f4")
    assert data.dtype.byteorder == ">"
    fits.PrimaryHDU(data).writeto(tmp_path / "a.fits")
    out = read_image(tmp_path / "a.fits")
    assert out.dtype == np.float64 and out.dtype.isnative and out.shape == (12, 10)
    np.testing.assert_array_equal(out, data.astype(np.float64))


def test_fits_written_by_hand_bscale_bzero_big_endian(tmp_path):
    """Physical value = BZERO + BSCALE * stored, stored as big-endian int16 (FITS standard)."""
    stored = np.array([[-3, 0, 7], [100, -32768, 32767]], dtype=np.int16)
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                   16",
        "NAXIS   =                    2",
        "NAXIS1  =                    3",
        "NAXIS2  =                    2",
        "BSCALE  =                  0.5",
        "BZERO   =                100.0",
    ]
    (tmp_path / "s.fits").write_bytes(_raw_fits(cards, stored.astype(">i2").tobytes()))
    expected = 100.0 + 0.5 * stored.astype(np.float64)
    np.testing.assert_array_equal(read_image(tmp_path / "s.fits"), expected)


def test_fits_nonstandard_cards_need_lenient_reading(tmp_path):
    data = np.arange(1, 17, dtype=">f4").reshape(4, 4)
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                    4",
        "NAXIS2  =                    4",
        "FOO     = 1.0.0 / unparsable value",
        "DATE-OBS= 2020-01-01 / unquoted string",
        "my key  = 'lower case keyword'",
        "PIXKPC  =                  3.9 / kpc per pixel",
        "BUNIT   = 'erg/s/cm2/arcsec2'",
        "TCOOL   =                 0.75",
    ]
    path = tmp_path / "odd.fits"
    path.write_bytes(_raw_fits(cards, data.tobytes()))
    # astropy's default reading chokes on these cards:
    with fits.open(path) as hdul, pytest.raises(fits.VerifyError):
        hdul[0].header["FOO"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing leaks out as a warning
        out = read_image(path)
        info = image_header_info(path)
    np.testing.assert_array_equal(out, data.astype(np.float64))
    assert info["pixel_kpc"] == pytest.approx(3.9)
    assert info["bunit"] == "erg/s/cm2/arcsec2"
    assert info["t_cool_gyr"] == pytest.approx(0.75)


def test_fits_nan_border_is_kept(tmp_path):
    data = RNG.random((10, 10)) + 1.0
    data[:2, :] = np.nan
    data[:, -1] = np.nan
    fits.PrimaryHDU(data.astype(np.float32)).writeto(tmp_path / "nan.fits")
    out = read_image(tmp_path / "nan.fits")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(data))
    np.testing.assert_array_equal(out[2:, :-1], data[2:, :-1].astype(np.float32))


def test_fits_cube_needs_plane_and_squeezes_size1(tmp_path):
    cube = RNG.random((3, 8, 6)).astype(np.float32) + 0.1
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube).writeto(path)
    err = _assert_image_error(path, "a 3-D cube of shape (3, 8, 6), not a 2-D map")
    assert "--plane" not in str(err)  # no command has such an option
    np.testing.assert_array_equal(read_image(path, plane=1), cube[1])
    _assert_image_error(path, "out of range", plane=3)
    fits.PrimaryHDU(cube[1:2]).writeto(tmp_path / "one.fits")
    np.testing.assert_array_equal(read_image(tmp_path / "one.fits"), cube[1])


def test_fits_gz_compressed(tmp_path):
    data = RNG.random((16, 16)).astype(np.float32) + 1
    path = tmp_path / "c.fits.gz"
    fits.PrimaryHDU(data).writeto(path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    np.testing.assert_array_equal(read_image(path), data)
    # gzip made by hand, .fit.gz
    plain = tmp_path / "p.fits"
    fits.PrimaryHDU(data).writeto(plain)
    (tmp_path / "q.fit.gz").write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_image(tmp_path / "q.fit.gz"), data)


def test_fits_tile_compressed(tmp_path):
    data = RNG.integers(1, 1000, size=(32, 32)).astype(np.int32)
    hdul = fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1", name="SCI")]
    )
    hdul.writeto(tmp_path / "t.fits.fz")
    np.testing.assert_array_equal(read_image(tmp_path / "t.fits.fz"), data)


def test_fits_extensions_by_name_and_number(tmp_path):
    sci = np.full((4, 5), 2.0, dtype=np.float32)
    err = np.full((4, 5), 3.0, dtype=np.float32)
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0])])
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(err, name="ERR"), table]
    ).writeto(tmp_path / "ext.fits")
    path = tmp_path / "ext.fits"
    np.testing.assert_array_equal(read_image(path), sci)  # first HDU holding an image
    np.testing.assert_array_equal(read_image(path, hdu="ERR"), err)
    np.testing.assert_array_equal(read_image(path, hdu=2), err)
    _assert_image_error(path, "no HDU 'NOPE'", hdu="NOPE")
    _assert_image_error(path, "no HDU 9", hdu=9)
    _assert_image_error(path, "table", hdu=3)


def test_fits_without_image(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "tab.fits")
    _assert_image_error(tmp_path / "tab.fits", "no HDU holds image data")


def test_fits_truncated_and_garbage(tmp_path):
    data = RNG.random((64, 64)).astype(np.float32)
    full = tmp_path / "full.fits"
    fits.PrimaryHDU(data).writeto(full)
    raw = full.read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: 2880 + 5000])
    _assert_image_error(tmp_path / "cut.fits", "truncated")
    (tmp_path / "hdr.fits").write_bytes(raw[:1000])
    _assert_image_error(tmp_path / "hdr.fits", "truncated FITS file")
    (tmp_path / "text.fits").write_text("this is not a FITS file\n")
    _assert_image_error(tmp_path / "text.fits", "not a readable FITS file")
    (tmp_path / "empty.fits").write_bytes(b"")
    _assert_image_error(tmp_path / "empty.fits", "not a readable FITS file")
    packed = gzip.compress(raw)
    (tmp_path / "cut.fits.gz").write_bytes(packed[: len(packed) // 2])
    _assert_image_error(tmp_path / "cut.fits.gz", "truncated FITS file")


def test_fits_integer_data_no_positive(tmp_path):
    fits.PrimaryHDU(np.zeros((5, 5), dtype=np.int16)).writeto(tmp_path / "z.fits")
    _assert_image_error(tmp_path / "z.fits", "no finite positive pixel")


# ------------------------------------------------------------------------- NPY
@pytest.mark.parametrize("dtype", [">i4", "<i2", "uint8", "float16", ">f8", "int64", "<u2"])
def test_npy_any_numeric_dtype_and_byte_order(tmp_path, dtype):
    data = (np.arange(1, 31).reshape(5, 6) * 3).astype(dtype)
    np.save(tmp_path / "a.npy", data)
    out = read_image(tmp_path / "a.npy")
    assert out.dtype == np.float64 and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.arange(1, 31).reshape(5, 6) * 3.0)


def test_npy_squeeze_and_cube(tmp_path):
    data = RNG.random((1, 7, 1, 5)) + 1
    np.save(tmp_path / "s.npy", data)
    np.testing.assert_array_equal(read_image(tmp_path / "s.npy"), data[0, :, 0, :])
    cube = RNG.random((4, 7, 5)) + 1
    np.save(tmp_path / "c.npy", cube)
    _assert_image_error(tmp_path / "c.npy", "a 3-D cube of shape (4, 7, 5)")
    np.testing.assert_array_equal(read_image(tmp_path / "c.npy", plane=2), cube[2])
    np.testing.assert_array_equal(read_image(tmp_path / "c.npy", plane=-1), cube[3])
    _assert_image_error(tmp_path / "s.npy", "plane 3 asked of a 2-D image", plane=3)
    np.save(tmp_path / "4d.npy", RNG.random((2, 3, 4, 5)))
    _assert_image_error(tmp_path / "4d.npy", "not a 2-D image")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.ones((3, 3), dtype=np.complex64), "complex"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric"),
        (np.ones((3, 3), dtype=bool), "non-numeric"),
        (np.zeros((0, 4)), "empty"),
        (np.arange(1.0, 5.0), "not a 2-D image"),
        (np.full((3, 3), np.nan), "no finite positive pixel"),
        (-np.ones((3, 3)), "no finite positive pixel"),
        (np.array([[np.inf, 0.0], [np.nan, -1.0]]), "no finite positive pixel"),
    ],
)
def test_npy_bad_contents(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    _assert_image_error(tmp_path / "bad.npy", match)


def test_npy_object_truncated_garbage(tmp_path):
    obj = np.empty((2, 2), dtype=object)
    obj[:] = 1.0
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    _assert_image_error(tmp_path / "obj.npy", "non-numeric")
    np.save(tmp_path / "full.npy", RNG.random((50, 50)))
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    _assert_image_error(tmp_path / "cut.npy", "truncated")
    (tmp_path / "junk.npy").write_bytes(b"junk" * 10)
    _assert_image_error(tmp_path / "junk.npy", ".npy")


# ------------------------------------------------------------------------ HDF5
def test_hdf5_nested_dataset(tmp_path):
    img = RNG.random((9, 8)) + 1
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("group/sub/map", data=img.astype(">f4"))
        fh.create_dataset("meta/radius_kpc", data=np.arange(5.0))
    expected = img.astype(np.float32)
    np.testing.assert_array_equal(read_image(path), expected)  # the only 2-D dataset
    np.testing.assert_array_equal(read_image(f"{path}:group/sub/map"), expected)
    np.testing.assert_array_equal(read_image(path, hdu="group/sub/map"), expected)
    _assert_image_error(f"{path}:group/nope", "no dataset 'group/nope'")
    _assert_image_error(f"{path}:meta/radius_kpc", "not a 2-D image")


def test_hdf5_choice_of_dataset(tmp_path):
    a, b = RNG.random((4, 4)) + 1, RNG.random((4, 4)) + 2
    path = tmp_path / "two.hdf5"
    with h5py.File(path, "w") as fh:
        fh["a"] = a
        fh["b"] = b
    _assert_image_error(path, "cannot tell which dataset")
    with h5py.File(path, "a") as fh:
        fh["image"] = b * 3
    np.testing.assert_array_equal(read_image(path), b * 3)
    cube = RNG.random((2, 4, 4)) + 1
    with h5py.File(tmp_path / "cube.h5", "w") as fh:
        fh["data/cube"] = cube
    _assert_image_error(tmp_path / "cube.h5", "3-D cube of shape (2, 4, 4)")
    np.testing.assert_array_equal(read_image(tmp_path / "cube.h5", plane=1), cube[1])


def test_hdf5_bad_files(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    _assert_image_error(tmp_path / "x.h5", "not a readable HDF5 file")
    with h5py.File(tmp_path / "c.h5", "w") as fh:
        fh["image"] = np.ones((3, 3), dtype=np.complex128)
        fh["cmp"] = np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])
    _assert_image_error(tmp_path / "c.h5", "complex")
    _assert_image_error(f"{tmp_path / 'c.h5'}:cmp", "non-numeric")


# ------------------------------------------------------------------ PNG / TIFF
def test_png_8_and_16_bit(tmp_path):
    a8 = RNG.integers(0, 256, size=(12, 10), dtype=np.uint8)
    a8[0, 0] = 200
    Image.fromarray(a8).save(tmp_path / "a8.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a8.png"), a8.astype(float))
    a16 = RNG.integers(0, 65536, size=(12, 10)).astype(np.uint16)
    a16[0, 0] = 60000  # above 8 bits: would be lost if the file were read as 8-bit
    Image.fromarray(a16).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png"), a16.astype(float))


def test_tiff_float_and_pages(tmp_path):
    f = (RNG.random((9, 7)) * 1e-3).astype(np.float32)
    Image.fromarray(f).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), f)
    pages = [Image.fromarray(f * (k + 1)) for k in range(3)]
    pages[0].save(tmp_path / "m.tiff", save_all=True, append_images=pages[1:])
    _assert_image_error(tmp_path / "m.tiff", "a 3-D cube of shape (3, 9, 7)")
    np.testing.assert_array_equal(read_image(tmp_path / "m.tiff", plane=2), f * 3)


def test_rgb_png_luminance(tmp_path):
    rgb = RNG.integers(1, 256, size=(6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.warns(UserWarning, match="luminance"):
        out = read_image(tmp_path / "c.png")
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    np.testing.assert_allclose(out, 0.299 * r + 0.587 * g + 0.114 * b, rtol=1e-12)
    grey = np.repeat(rgb[..., :1], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "g.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(tmp_path / "g.png"), rgb[..., 0])


def test_pil_truncated_and_garbage(tmp_path):
    Image.fromarray(RNG.integers(0, 65535, size=(64, 64)).astype(np.uint16)).save(
        tmp_path / "a.png"
    )
    raw = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    _assert_image_error(tmp_path / "cut.png", "truncated")
    (tmp_path / "t.png").write_text("hello")
    _assert_image_error(tmp_path / "t.png", "not an image")


# ------------------------------------------------------------ generic errors
def test_missing_folder_unknown_format(tmp_path):
    _assert_image_error(tmp_path / "missing.fits", "no such file")
    _assert_image_error(tmp_path, "is a folder")
    (tmp_path / "x.xyz").write_bytes(b"\x00\x01garbage")
    _assert_image_error(tmp_path / "x.xyz", "unknown image format '.xyz'")


def test_format_sniffed_without_known_extension(tmp_path):
    data = RNG.random((4, 3)) + 1
    with open(tmp_path / "map.dat", "wb") as fh:
        np.save(fh, data)
    np.testing.assert_array_equal(read_image(tmp_path / "map.dat"), data)
    fits.PrimaryHDU(data).writeto(tmp_path / "map.img", output_verify="ignore")
    np.testing.assert_array_equal(read_image(tmp_path / "map.img"), data)


def test_header_info(tmp_path):
    hdu = fits.PrimaryHDU(np.ones((4, 4), dtype=np.float32))
    hdu.header["PIXKPC"] = (3.90625, "pixel size [kpc]")
    hdu.header["BUNIT"] = "counts"
    hdu.header["CLUSTID"] = "c0042"
    hdu.header["LABEL"] = "WCC"
    hdu.writeto(tmp_path / "h.fits")
    info = image_header_info(tmp_path / "h.fits")
    assert info["pixel_kpc"] == 3.90625 and info["bunit"] == "counts"
    assert info["cluster_id"] == "c0042" and info["label"] == "WCC"
    np.save(tmp_path / "h.npy", np.ones((2, 2)))
    assert image_header_info(tmp_path / "h.npy") == {"pixel_kpc": None, "bunit": None}
    with h5py.File(tmp_path / "h.h5", "w") as fh:
        fh["image"] = np.ones((2, 2))
        fh["image"].attrs["PIXKPC"] = 2.5
    assert image_header_info(tmp_path / "h.h5")["pixel_kpc"] == 2.5


# ------------------------------------------------------------------ catalogues
def _write_files(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / name, np.ones((2, 2)))


def _catalog(folder: Path, text: str, files: list[str] | None = None) -> Path:
    _write_files(folder, files or [])
    path = folder / "catalog.csv"
    path.write_text(text)
    return path


def test_catalog_labels_and_paths(tmp_path):
    files = ["img/a.npy", "img/b.npy", "img/c.npy"]
    path = _catalog(
        tmp_path,
        "image_id,cluster_id,file,label\n007,0012,img/a.npy,cc\n8,0014,img/b.npy, Wcc\n"
        "9,13,img/c.npy,NCC\n",
        files,
    )
    df = read_catalog(path)
    assert df["image_id"].tolist() == ["007", "8", "9"]  # strings, leading zeros kept
    assert df["cluster_id"].tolist() == ["0012", "0014", "13"]
    assert df["label"].tolist() == ["CC", "WCC", "NCC"]
    assert df["y"].dtype == np.int64 and df["y"].tolist() == [0, 1, 2]
    assert df["path"].tolist() == [str((tmp_path / f).resolve()) for f in files]


def test_catalog_labels_from_t_cool(tmp_path):
    t = [0.2, 1.0, 1.0001, 7.69, 7.7, 12.0]
    files = [f"{i}.npy" for i in range(len(t))]
    rows = "".join(f"{i},c{i},{f},{ti}\n" for i, (f, ti) in enumerate(zip(files, t, strict=True)))
    df = read_catalog(_catalog(tmp_path, "image_id,cluster_id,file,t_cool_gyr\n" + rows, files))
    # thresholds of METHOD.md: CC if t <= 1.0, NCC if t >= 7.7
    assert df["label"].tolist() == ["CC", "CC", "WCC", "WCC", "NCC", "NCC"]
    assert df["y"].tolist() == [0, 0, 1, 1, 2, 2]


def test_catalog_label_takes_precedence_over_t_cool(tmp_path):
    text = "image_id,cluster_id,file,label,t_cool_gyr\n1,a,1.npy,NCC,0.1\n2,c,2.npy,,0.1\n"
    text += "3,b,3.npy,NaN,8\n"
    df = read_catalog(_catalog(tmp_path, text, ["1.npy", "2.npy", "3.npy"]))
    assert df["label"].tolist() == ["NCC", "CC", "NCC"]


def test_catalog_without_labels(tmp_path):
    path = _catalog(tmp_path, "image_id,cluster_id,file\n1,a,1.npy\n", ["1.npy"])
    with pytest.raises(CatalogError, match="missing required column 'label'"):
        read_catalog(path)
    df = read_catalog(path, require_labels=False)
    assert df["y"].tolist() == [-1] and df["label"].tolist() == [None]
    path.write_text("image_id,cluster_id,file,label\n1,a,1.npy,\n")
    with pytest.raises(CatalogError, match=r"no label in row 1 \(image_id 1\)"):
        read_catalog(path)
    assert read_catalog(path, require_labels=False)["y"].tolist() == [-1]


def _assert_catalog_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(CatalogError) as info:
        read_catalog(path, **kwargs)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg, msg
    assert match in msg, msg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty catalogue"),
        ("image_id,cluster_id,file,label\n", "empty catalogue (no rows)"),
        ("image_id,file,label\n1,1.npy,CC\n", "missing required column 'cluster_id'"),
        ("cluster_id,file,label\na,1.npy,CC\n", "missing required column 'image_id'"),
        (
            "image_id,cluster_id,file,label\n1,a,1.npy,CC\n2,a,2.npy,XCC\n",
            "unknown label 'XCC' in row 2 (image_id 2)",
        ),
        ("image_id,cluster_id,file,label\n1,a,1.npy,CC\n1,b,2.npy,NCC\n", "duplicate image_id '1'"),
        ("image_id,cluster_id,file,t_cool_gyr\n1,a,1.npy,fast\n", "invalid t_cool_gyr 'fast'"),
        ("image_id,cluster_id,file,t_cool_gyr\n1,a,1.npy,-2\n", "invalid t_cool_gyr '-2"),
        ("image_id,cluster_id,file,label\n1,,1.npy,CC\n", "empty 'cluster_id' in row 1"),
    ],
)
def test_catalog_errors(tmp_path, text, match):
    _assert_catalog_error(_catalog(tmp_path, text, ["1.npy", "2.npy"]), match)


def test_catalog_missing_files(tmp_path):
    text = "image_id,cluster_id,file,label\n1,a,1.npy,CC\n2,a,sub/gone.fits,CC\n"
    path = _catalog(tmp_path, text, ["1.npy"])
    _assert_catalog_error(path, "1 listed file(s) do not exist, first in row 2: sub/gone.fits")
    df = read_catalog(path, check_files=False)
    assert df["path"].iloc[1] == str((tmp_path / "sub" / "gone.fits").resolve())
    _assert_catalog_error(tmp_path / "nope.csv", "no such catalogue file")


def test_catalog_missing_values_in_optional_columns(tmp_path):
    text = "image_id,cluster_id,file,label,r500_kpc,t_cool_gyr\nNA,None,1.npy,CC,,\n2,b,2.npy,NCC,NA,3\n"
    df = read_catalog(_catalog(tmp_path, text, ["1.npy", "2.npy"]))
    assert df["image_id"].tolist() == ["NA", "2"] and df["cluster_id"].tolist() == ["None", "b"]
    assert df["r500_kpc"].dtype == np.float64 and df["r500_kpc"].isna().all()
    assert df["label"].tolist() == ["CC", "NCC"]


def test_catalog_bom_and_spaces(tmp_path):
    text = "\ufeffimage_id , cluster_id,file,label\n 1, a , 1.npy ,cc\n"
    path = tmp_path / "catalog.csv"
    _write_files(tmp_path, ["1.npy"])
    path.write_text(text, encoding="utf-8")
    df = read_catalog(path)
    assert df[["image_id", "cluster_id", "file", "label"]].iloc[0].tolist() == [
        "1",
        "a",
        "1.npy",
        "CC",
    ]


def test_write_catalog_round_trip(tmp_path):
    _write_files(tmp_path, ["1.npy", "2.npy"])
    df = pd.DataFrame(
        {"image_id": ["01", "02"], "cluster_id": ["x", "y"], "file": ["1.npy", "2.npy"]}
    )
    df["t_cool_gyr"] = [0.5, 9.0]
    write_catalog(df, tmp_path / "catalog.csv")
    back = read_catalog(tmp_path / "catalog.csv")
    assert back["image_id"].tolist() == ["01", "02"] and back["label"].tolist() == ["CC", "NCC"]
    write_catalog(back, tmp_path / "again.csv")  # derived columns are dropped
    assert "path" not in pd.read_csv(tmp_path / "again.csv").columns


def test_resolve_data(tmp_path):
    (tmp_path / "catalog.csv").write_text("image_id,cluster_id,file\n")
    assert resolve_data(tmp_path) == tmp_path / "catalog.csv"
    assert resolve_data(tmp_path / "catalog.csv") == tmp_path / "catalog.csv"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="has no catalog.csv"):
        resolve_data(tmp_path / "empty")
    with pytest.raises(UsageError, match="no such file or folder"):
        resolve_data(tmp_path / "nowhere")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UsageError, match="must be a folder"):
        resolve_data(tmp_path / "x.txt")


# ------------------------------------------------- validation at the edge (issue 14)
def test_catalog_refuses_a_cluster_with_two_labels(tmp_path):
    text = (
        "image_id,cluster_id,file,label,t_cool_gyr\n"
        "1,a,1.npy,CC,\n2,b,2.npy,NCC,\n3,a,3.npy,,0.5\n4,b,4.npy,ncc,\n5,b,5.npy,,3.0\n"
    )
    path = _catalog(tmp_path, text, [f"{i}.npy" for i in range(1, 6)])
    # row 3 takes CC from t_cool (as row 1 has); row 5 takes WCC from t_cool
    _assert_catalog_error(path, "cluster 'b' is labelled NCC in row 2 and WCC in row 5")
    path.write_text(text.replace("4,b,4.npy,ncc,", "4,b,4.npy,,"))  # a row without a label
    _assert_catalog_error(path, "all maps of a cluster share its label", require_labels=False)
    path.write_text(text.replace("5,b,5.npy,,3.0", "5,b,5.npy,,9.0"))
    assert read_catalog(path)["label"].tolist() == ["CC", "NCC", "CC", "NCC", "NCC"]


@pytest.mark.parametrize("bad", ["-5", "0", "inf", "-inf", "abc"])
def test_catalog_refuses_a_bad_pixel_scale(tmp_path, bad):
    text = f"image_id,cluster_id,file,label,pixel_kpc\n1,a,1.npy,CC,3.9\n2,b,2.npy,NCC,{bad}\n"
    path = _catalog(tmp_path, text, ["1.npy", "2.npy"])
    _assert_catalog_error(path, f"pixel_kpc '{bad}' in row 2 (image_id 2)")
    _assert_catalog_error(path, "kpc", require_labels=False, check_files=False)


def test_catalog_pixel_scale_as_floats_missing_allowed(tmp_path):
    text = "image_id,cluster_id,file,label,pixel_kpc\n1,a,1.npy,CC,3.9\n2,b,2.npy,NCC,\n"
    df = read_catalog(_catalog(tmp_path, text, ["1.npy", "2.npy"]))
    assert df["pixel_kpc"].dtype == np.float64
    assert df["pixel_kpc"].iloc[0] == 3.9 and np.isnan(df["pixel_kpc"].iloc[1])


def test_catalog_tells_a_folder_and_a_symlink_loop_from_a_missing_file(tmp_path):
    (tmp_path / "maps").mkdir()
    text = "image_id,cluster_id,file,label\n1,a,1.npy,CC\n2,b,maps,NCC\n"
    path = _catalog(tmp_path, text, ["1.npy"])
    _assert_catalog_error(path, "the file of row 2, maps (")
    _assert_catalog_error(path, "is a folder, not a file")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    path.write_text("image_id,cluster_id,file,label\n1,a,1.npy,CC\n2,b,loop_a,NCC\n")
    _assert_catalog_error(path, "row 2, loop_a")
    _assert_catalog_error(path, "symlink loop")
    assert read_catalog(path, check_files=False)["path"].iloc[1] == str(tmp_path / "loop_a")
    _assert_catalog_error(tmp_path / "loop_a", "symlink loop")
    with pytest.raises(UsageError, match="symlink loop"):
        resolve_data(tmp_path / "loop_a")
    _assert_image_error(tmp_path / "loop_a", "symlink loop")


def test_catalog_inside_a_data_folder_that_is_a_folder(tmp_path):
    (tmp_path / "catalog.csv").mkdir()
    with pytest.raises(CatalogError, match="catalog.csv: is a folder"):
        resolve_data(tmp_path)


@pytest.mark.parametrize("bad", [0, -2.5, "abc"])
def test_header_pixel_scale_must_be_positive(tmp_path, bad):
    header = fits.Header()
    header["PIXKPC"] = bad
    path = tmp_path / "h.fits"
    fits.PrimaryHDU(np.ones((4, 4), np.float32), header=header).writeto(path)
    with pytest.raises(ImageError) as info:
        image_header_info(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: header keyword PIXKPC = {bad!r}") and "kpc" in msg, msg
    with h5py.File(tmp_path / "h.h5", "w") as fh:
        fh["image"] = np.ones((4, 4))
        fh["image"].attrs["PIXKPC"] = np.inf
    with pytest.raises(ImageError, match="PIXKPC = inf"):
        image_header_info(tmp_path / "h.h5")
