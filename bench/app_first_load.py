"""The loan form's first load, timed in Debian's Chromium: each run starts a new
`streamlit run streamlit_app.py` (so nothing is imported or cached yet), opens the page
once the server answers, and notes when the decision shows and when the page settles
(the decision and both SHAP plots drawn, nothing running). Needs `make demo` first; uses
the demo's Redis like `make app`. Nothing else should run meanwhile: the numbers
are wall-clock.

    .venv/bin/python bench/app_first_load.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium.webdriver import Chrome
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loan_demo import embedded_redis  # noqa: E402
from tests.browser import DECISIONS, chromium, page_text, shown_decision  # noqa: E402
from tests.redis_servers import free_port  # noqa: E402


def one_load(browser: Chrome) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    app = subprocess.Popen(
        [str(Path(sys.executable).parent / "streamlit"), "run", "streamlit_app.py",
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                if app.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError("streamlit did not start") from None
                time.sleep(0.05)
        server_ready = time.monotonic()
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 120, poll_frequency=0.05)
        wait.until(lambda b: any(d in page_text(b) for d in DECISIONS))
        decision = time.monotonic()
        shown = wait.until(shown_decision)
        if shown.startswith("exception"):
            raise RuntimeError(f"the app failed: {shown}")
        done = time.monotonic()
    finally:
        app.terminate()
        app.wait(timeout=30)
    return {
        "server up": server_ready - started,
        "page opened -> decision": decision - server_ready,
        "page opened -> settled": done - server_ready,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("Redis:", embedded_redis.configure_environment())
    browser = chromium()
    try:
        runs = [one_load(browser) for _ in range(args.runs)]
    finally:
        browser.quit()
    for name in runs[0]:
        values = [run[name] for run in runs]
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:26} median {statistics.median(values):5.2f} s  ({shown})")


if __name__ == "__main__":
    main()
