"""The report in a real browser: headless Chromium (Debian's) driven through Selenium.

Every image loads (the lazy ones made eager first), the nav bar leads to every page and the
pager through every page of a layer, no script was injected, the console stays free of errors,
and the summary's link opens the explorer (its own page, with its own script) without one. Selenium Manager is never run: the driver and browser are given by path
and the manager is patched to fail loudly if anything calls it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager

from convlens.report import write_report
from test_report_render import EVIL_CLASS, EVIL_FILE, EVIL_LAYER, fake_report_data

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def _no_selenium_manager(*args: object, **kwargs: object) -> None:
    raise AssertionError("Selenium Manager must not run: it would download a driver")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as profile:
        patch.setattr(SeleniumManager, "binary_paths", _no_selenium_manager)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    return write_report(fake_report_data(tmp, channels=2, top=9), tmp / "report")


# Lazy images load only near the viewport: make every one eager and wait until each has loaded
# or failed, so that the check sees all of them.
_LOAD_ALL = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(i => { i.loading = 'eager'; });
Promise.all(images.map(i => i.complete ? null : new Promise(r => {
  i.addEventListener('load', r, {once: true});
  i.addEventListener('error', r, {once: true});
}))).then(() => done(images.length));
"""


def image_states(driver: webdriver.Chrome) -> list[tuple[str, bool, int]]:
    """(src, complete, naturalWidth) of every <img> on the current page, lazy ones loaded."""
    driver.set_script_timeout(120)
    driver.execute_async_script(_LOAD_ALL)
    states = driver.execute_script(
        "return Array.from(document.images).map("
        "i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    )
    return [tuple(s) for s in states]


def check_images(driver: webdriver.Chrome) -> int:
    """Every image of the current page (lazy ones too) loads; returns how many there are."""
    states = image_states(driver)
    assert all(complete and width > 0 for _, complete, width in states), [
        s for s in states if not (s[1] and s[2] > 0)
    ]
    return len(states)


def check_explorer(driver: webdriver.Chrome, index: Path) -> None:
    """The summary links the explorer, which opens without a console error and computes."""
    driver.get(index.as_uri())
    driver.get_log("browser")
    link = driver.find_element(By.LINK_TEXT, "Explore conv, transposed conv and C")
    link.click()
    assert driver.current_url.endswith("/explorer.html")
    generator = driver.find_element(By.CSS_SELECTOR, 'meta[name="generator"]')
    assert (generator.get_attribute("content") or "").startswith("convlens explore")
    size = driver.find_element(By.CSS_SELECTOR, '[data-testid="output-size"]').text
    assert re.fullmatch(r"\d+(×\d+)?", size), size
    assert severe_console_entries(driver) == []


def severe_console_entries(driver: webdriver.Chrome) -> list[dict[str, object]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def heading(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def check_report_in_browser(driver: webdriver.Chrome, index: Path) -> dict[str, str]:
    """Visit every page through the nav bar; assert images, headings, no script, no errors.

    Returns the headings seen, keyed by page file name.
    """
    driver.get_log("browser")  # drop entries of earlier pages
    driver.get(index.as_uri())
    assert heading(driver) == "Summary"
    links = [
        (a.get_attribute("href"), a.text)
        for a in driver.find_elements(By.CSS_SELECTOR, "header nav a")
    ]
    assert len(links) >= 2
    seen: dict[str, str] = {}
    for position, (href, text) in enumerate(links):
        # click the nav link of this page from the page before it
        nav = driver.find_elements(By.CSS_SELECTOR, "header nav a")
        assert [a.text for a in nav] == [t for _, t in links]
        nav[position].click()
        assert driver.current_url == href
        name = href.rsplit("/", 1)[-1]
        seen[name] = heading(driver)
        if name.startswith("layer-"):
            assert seen[name] == f"Layer {text}"
        active = driver.find_element(By.CSS_SELECTOR, "header nav a.active")
        assert active.get_attribute("href") == href
        check_images(driver)
        assert driver.execute_script("return document.scripts.length;") == 0
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        # the later pages of a layer, one "next" click after another
        while nexts := driver.find_elements(By.CSS_SELECTOR, "nav.pager a.next"):
            nexts[0].click()
            name = driver.current_url.rsplit("/", 1)[-1]
            seen[name] = heading(driver)
            assert seen[name] == f"Layer {text}"
            check_images(driver)
            assert driver.execute_script("return document.scripts.length;") == 0
    assert severe_console_entries(driver) == []
    check_explorer(driver, index)
    return seen


def test_every_page_every_image_and_no_console_error(
    browser: webdriver.Chrome, report: Path
) -> None:
    seen = check_report_in_browser(browser, report)
    assert seen == {
        "index.html": "Summary",
        "layer-01.html": "Layer features.0",
        "layer-02.html": f"Layer {EVIL_LAYER}",
        "filters.html": "Filters",
        "geometry.html": "Geometry",
        "occlusion.html": "Occlusion sensitivity",
    }


def test_the_browser_shows_user_strings_verbatim(browser: webdriver.Chrome, report: Path) -> None:
    browser.get((report.parent / "layer-01.html").as_uri())
    titles = [img.get_attribute("title") for img in browser.find_elements(By.TAG_NAME, "img")]
    assert (
        sum((t or "").startswith(EVIL_FILE) for t in titles) == 4
    )  # 2 channels × (projection, patch)
    captions = [c.text for c in browser.find_elements(By.TAG_NAME, "figcaption")]
    assert EVIL_CLASS in captions
    browser.get((report.parent / "occlusion.html").as_uri())
    assert browser.find_element(By.CSS_SELECTOR, "section.occlusion h2").text == (
        f"{EVIL_FILE} label: {EVIL_CLASS}"
    )
    assert browser.find_elements(By.TAG_NAME, "i") == []
    assert severe_console_entries(browser) == []


def test_channel_links_jump_within_a_layer_page(browser: webdriver.Chrome, report: Path) -> None:
    browser.get((report.parent / "layer-02.html").as_uri())
    links = browser.find_elements(By.CSS_SELECTOR, "nav.channels a")
    assert [a.text for a in links] == ["0", "7", "99"]
    links[1].click()
    assert browser.current_url.endswith("layer-02.html#c7")
    target = browser.find_element(By.ID, "c7")
    assert target.find_element(By.TAG_NAME, "h2").text == "channel 7"


def test_the_check_catches_a_broken_image(
    browser: webdriver.Chrome, report: Path, tmp_path: Path
) -> None:
    """The browser check is not vacuous: a missing image fails it, and Chromium logs it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    victim = sorted((copy / "img" / "l01").iterdir())[0]
    victim.unlink()
    with pytest.raises(AssertionError, match=victim.name):
        check_report_in_browser(browser, copy / "index.html")
    browser.get((copy / "layer-01.html").as_uri())
    entries = severe_console_entries(browser)
    assert any(victim.name in str(e["message"]) for e in entries)


def test_pages_of_a_layer_and_channel_links_across_them(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """A layer of 150 channels at 64 a page: three pages, each reached by the pager and by
    page numbers; a channel link on page 1 to channel 140 opens page 3 at that channel."""
    import numpy as np

    from convlens.report import ChannelBlock, LayerSection, ReportData, Summary, Tile
    from test_report_render import _png_bytes

    tiny = _png_bytes(np.full((4, 4), 9, np.uint8))
    blocks = tuple(
        ChannelBlock(c, tuple(Tile(tiny, tiny, 1.0, k, "x.png") for k in range(3)))
        for c in range(150)
    )
    data = ReportData(Summary("m", "d", "c"), layers=(LayerSection("conv", "C", 150, blocks),))
    index = write_report(data, tmp_path / "r", channels_per_page=64)
    seen = check_report_in_browser(browser, index)
    assert {k: v for k, v in seen.items() if k.startswith("layer-")} == {
        "layer-01.html": "Layer conv",
        "layer-01-p2.html": "Layer conv",
        "layer-01-p3.html": "Layer conv",
    }
    browser.get((index.parent / "layer-01.html").as_uri())
    numbers = browser.find_elements(By.CSS_SELECTOR, "nav.pager .pages a")
    assert [a.text for a in numbers][:3] == ["1", "2", "3"]
    numbers[2].click()
    assert browser.current_url.endswith("layer-01-p3.html")
    ids = [e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "section.block")]
    assert ids == [f"c{c}" for c in range(128, 150)]
    browser.get((index.parent / "layer-01.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "details.channels summary").click()  # all channels
    browser.find_element(By.CSS_SELECTOR, 'nav.channels a[href="layer-01-p3.html#c140"]').click()
    assert browser.current_url.endswith("layer-01-p3.html#c140")
    target = browser.find_element(By.ID, "c140")
    assert target.find_element(By.TAG_NAME, "h2").text == "channel 140"
    assert severe_console_entries(browser) == []


def test_analysis_pages_with_hostile_strings(browser: webdriver.Chrome, tmp_path: Path) -> None:
    """The evolution, invariance and correspondence pages: reached through the nav bar, every
    image loads, no console error, hostile strings shown verbatim."""
    from test_report_analyses import EVIL, EVIL_FILE, fake_analysis_data

    index = write_report(fake_analysis_data(), tmp_path / "r")
    seen = check_report_in_browser(browser, index)
    assert seen == {
        "index.html": "Summary",
        "evolution.html": "Feature evolution during training",
        "invariance.html": "Invariance to translation, scale and rotation",
        "correspondence.html": "Correspondence of object parts",
    }
    browser.get((index.parent / "evolution.html").as_uri())
    assert check_images(browser) == 2
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table th")]
    assert EVIL in headers
    changed = browser.find_elements(By.CSS_SELECTOR, "table.evolution td.changed")
    assert [c.text for c in changed] == ["#7"]
    browser.get((index.parent / "correspondence.html").as_uri())
    assert EVIL_FILE in [th.text for th in browser.find_elements(By.CSS_SELECTOR, "tbody th")]
    assert browser.find_elements(By.TAG_NAME, "i") == []
    browser.get((index.parent / "invariance.html").as_uri())
    assert check_images(browser) == 2
    csv_link = browser.find_element(By.LINK_TEXT, "invariance.csv")
    assert csv_link.get_attribute("href").endswith("/data/invariance/invariance.csv")
    assert severe_console_entries(browser) == []
