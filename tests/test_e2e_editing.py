"""Editing a photo in a real browser: upload it as the canvas background, paint a blob over its
middle with the mouse, generate, download, and check that every unpainted pixel survived.

The same real `streamlit run` server and Debian Chromium as tests/test_e2e_browser.py (its
fixtures and helpers; skipped or failing on a machine without them in the same way).
"""

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from gradop import serving
from gradop.editing import fit_image
from gradop.metadata import read_params
from test_e2e_browser import (ARTIFACTS, RED, browser, describe_with_fast_settings, pick_colour, server,  # noqa: F401
                              stroke, wait_idle)
from playwright.sync_api import expect  # noqa: E402  (after the skip logic of test_e2e_browser)

GENERATION_TIMEOUT_MS = 600_000  # a wait, never a timing assertion: the shared 2-core machine can be very busy


def textured_photo(path: Path) -> Image.Image:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:200, 0:300]
    pixels = np.stack([xx / 300 * 220, yy / 200 * 200, 120 + 60 * np.sin(xx / 9.0)], -1) + rng.normal(0, 10, (200, 300, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(path)
    return image


def test_paint_over_an_uploaded_photo_keeps_the_unpainted_pixels(server, browser, tmp_path):  # noqa: F811
    photo = textured_photo(tmp_path / "photo.png")
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(server)
        page.locator("canvas.upper-canvas").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_text("Photo (edit a real image)").click()
        wait_idle(page)
        page.locator("input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        wait_idle(page)
        expect(page.get_by_role("switch", name="Change only what I paint")).to_be_checked()
        pick_colour(page, RED)
        wait_idle(page)
        stroke(page, [(0.4, 0.45), (0.6, 0.5), (0.45, 0.55), (0.55, 0.45)])  # a blob in the middle band
        wait_idle(page)
        describe_with_fast_settings(page, "a red hut in a field")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_text(re.compile(r"^Done in"))).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
        expect(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download PNG").first.click()
        data = Path(download.value.path()).read_bytes()
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "failure-editing.png")
        raise
    finally:
        context.close()

    params = read_params(data)
    assert params["mode"] == "edit" and params["method"] == "gradop+" and params["prompt"] == "a red hut in a field"
    result = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    # The photo as the app fits it to the canvas, then as the pipeline fits it to the model's size.
    expected = np.asarray(fit_image(serving.fit_background(photo, 512), result.shape[1::-1]))
    rows = result.shape[0]
    top, bottom = slice(0, int(0.3 * rows)), slice(int(0.7 * rows), rows)  # far from the painted band
    assert np.array_equal(result[top], expected[top]) and np.array_equal(result[bottom], expected[bottom])
    middle = slice(int(0.45 * rows), int(0.55 * rows))
    assert np.abs(result[middle].astype(int) - expected[middle]).mean() > 5  # the painted band was synthesised
