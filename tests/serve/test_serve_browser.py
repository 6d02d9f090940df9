"""The chat page in headless Chromium (Selenium): a Spanish question gets a streamed answer and its sources."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver); "
                    "the browser test needs them")
    return browser, driver


@pytest.fixture()
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra) is not installed")
    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,800", "--lang=es"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    yield chrome
    chrome.quit()


@pytest.mark.integration
def test_page_streams_a_spanish_answer_with_sources(serve, smollm2, browser, serve_law_index, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from amauta.rag.answer import RagAnswerer
    from amauta.serve.backends import TransformersBackend

    url = serve(TransformersBackend({"smollm2-135m-instruct": smollm2}), rag=RagAnswerer(serve_law_index, top_k=2))
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda b: "modelo" in b.find_element(By.ID, "status").text)
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "smollm2-135m-instruct"
    assert browser.find_element(By.ID, "rag-row").is_displayed()
    assert not browser.find_element(By.ID, "key-row").is_displayed()  # no --api-key: no key field
    Select(browser.find_element(By.ID, "strategy")).select_by_value("greedy")
    browser.find_element(By.ID, "max-tokens").clear()
    browser.find_element(By.ID, "max-tokens").send_keys("48")
    browser.find_element(By.ID, "question").send_keys("¿Cuál es la tarifa general del IVA?")
    browser.find_element(By.ID, "send").click()

    # Watch the answer grow: several different partial lengths before it is done means it streamed.
    seen, deadline = set(), time.monotonic() + 120
    while time.monotonic() < deadline:
        answers = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")
        if answers:
            seen.add(len(answers[-1].text))
            if answers[-1].get_attribute("data-done"):
                break
        time.sleep(0.05)
    answer = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
    assert answer.get_attribute("data-done") and "error" not in answer.get_attribute("class")
    assert answer.text.strip() and len(seen - {0, len(answer.text)}) >= 2, seen
    sources = browser.find_element(By.ID, "sources").text
    assert "iva.md" in sources
    shot = Path(os.environ.get("AMAUTA_SCREENSHOT_DIR", tmp_path)) / "serve-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
