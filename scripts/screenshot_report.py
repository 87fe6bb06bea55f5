"""Screenshots of a convlens report through headless Chromium, for looking at it.

    python scripts/screenshot_report.py REPORT_DIR SHOTS_DIR [--width 1280] [--max-height 2400]

Takes one PNG per page (index, the first layer page or the one given with --layer, filters,
occlusion). Uses Debian's /usr/bin/chromium and /usr/bin/chromedriver; Selenium Manager is
never run (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("shots", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=2400)
    parser.add_argument("--layer", default="layer-01.html")
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    pages = ["index.html", args.layer, "filters.html", "occlusion.html"]
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={args.width},900")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            for name in pages:
                page = args.report / name
                if not page.is_file():
                    print(f"skipped {name}: not in the report")
                    continue
                driver.get(page.resolve().as_uri())
                height = driver.execute_script("return document.documentElement.scrollHeight;")
                driver.set_window_size(args.width, min(int(height) + 120, args.max_height))
                shot = args.shots / name.replace(".html", ".png")
                driver.save_screenshot(str(shot))
                print(f"{shot} ({height} px tall page)")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
