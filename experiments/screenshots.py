"""Screenshots of the MLflow UI as a new user sees it: a small strategy comparison and a
tracked run, opened in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
selenium; nothing is downloaded).

    python experiments/screenshots.py [--out experiments/results/screenshots]

Runs `foresight track` (ioi and gender, 40 steps) and `foresight compare` (ioi; free, static,
random; 2 seeds of 8 steps) into a fresh SQLite store in a temporary directory, starts
`mlflow server` on it and saves five PNGs in `--out`: compare_runs.png (the experiment's runs
table), compare_parent.png (the parent run: description and summary metrics),
compare_figure.png (its figure artifact), compare_child.png (a child run's charts: step
metrics, and its final accuracies as bars) and tracked_run.png (the tracked run's charts).

The helpers (`start_ui`, `browser`, `wait_for_text`) serve `tests/test_mlflow_ui.py`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from foresight.mlflow_ui import MODEL_TRAINING, ui_url

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's packages
OUT = Path(__file__).parent / "results" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(store: Path, timeout: float = 240.0) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on the SQLite store `store` (artifacts where the runs put them), in its
    own process group; returns the process and its URL once /health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{store}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = store.with_suffix(".server.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    stop_ui(process)
    raise RuntimeError(f"mlflow server did not come up at {url}: see {log.name}")


def stop_ui(process: subprocess.Popen) -> None:
    """Kill the server's process group (the server and its worker)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def browser(width: int = 1600, height: int = 1100) -> webdriver.Chrome:
    """Headless Chromium through Debian's chromedriver (given explicitly: selenium-manager,
    which would download a driver, is never asked)."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for_text(driver: webdriver.Chrome, text: str, timeout: float = 90.0) -> None:
    """Wait until the page shows `text` (TimeoutException otherwise)."""
    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def close_assistant(driver: webdriver.Chrome) -> None:
    """Close MLflow's assistant side panel, which covers a third of the page."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


def shoot(driver: webdriver.Chrome, url: str, text: str, path: Path, scroll_to: str | None = None) -> Path:
    """Open `url`, wait for `text`, scroll `scroll_to` (a text) into view, save a PNG."""
    driver.get(url)
    wait_for_text(driver, text)
    close_assistant(driver)
    if scroll_to is not None:
        element = driver.find_element(By.XPATH, f"//*[starts-with(normalize-space(text()), {scroll_to!r})]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    time.sleep(2)  # charts and images finish drawing
    driver.save_screenshot(str(path))
    return path


def foresight(store: Path, *args: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    subprocess.run([sys.executable, "-m", "foresight.app.cli", *args], check=True, env=env, cwd=store.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mlflow.db"
        foresight(store, "track", "--task", "ioi", "--task", "gender", "--steps", "40", "--every", "10",
                  "--out", str(Path(tmp) / "runs"))  # fmt: skip
        foresight(store, "compare", "--task", "ioi", "--strategies", "free,static,random", "--seeds", "2",
                  "--steps", "8", "--every", "4", "--out", str(Path(tmp) / "compare"))  # fmt: skip
        mlflow.set_tracking_uri(f"sqlite:///{store}")
        tracked = mlflow.search_runs(experiment_names=["foresight-track"]).iloc[0]
        runs = mlflow.search_runs(experiment_names=["foresight-compare"])
        parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
        process, url = start_ui(store)
        driver = browser()
        try:
            compare_id = parent["experiment_id"]
            shoot(driver, f"{url}/#/experiments/{compare_id}?{MODEL_TRAINING}", "compare-ioi",
                  args.out / "compare_runs.png")  # fmt: skip
            shoot(driver, ui_url(compare_id, parent["run_id"], base=url), "accuracy_after/static/mean",
                  args.out / "compare_parent.png", scroll_to="Description")  # fmt: skip
            figure = ui_url(compare_id, parent["run_id"], "/artifacts/comparison/accuracy.png", url)
            shoot(driver, figure, "comparison/accuracy.png", args.out / "compare_figure.png")
            metrics = ui_url(tracked["experiment_id"], tracked["run_id"], "/model-metrics", url)
            shoot(driver, metrics, "circuit_distance", args.out / "tracked_run.png",
                  scroll_to="ioi/circuit_distance/to_start")  # fmt: skip
            child = runs[runs["tags.mlflow.runName"] == "static-s0"].iloc[0]
            finals = ui_url(compare_id, child["run_id"], "/model-metrics", url)
            shoot(driver, finals, "accuracy_after", args.out / "compare_child.png")
        finally:
            driver.quit()
            stop_ui(process)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
