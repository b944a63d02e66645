"""Debian's Chromium (headless, through Debian's ChromeDriver) on the loan form, for the
browser test and bench/app_first_load.py."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

DECISIONS = ("Loan rejected!", "Loan approved!")


def chromium(width: int = 1400, height: int = 1400) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def page_text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def shown_decision(browser: webdriver.Chrome) -> str | None:
    """The decision on the page once it has settled (both SHAP plots drawn, nothing
    running), an app exception as "exception: ...", else None."""
    exceptions = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    if exceptions:
        return "exception: " + exceptions[0].text
    images = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
    body = page_text(browser)
    for decision in DECISIONS:
        if decision in body and len(images) == 2 and "Running..." not in body:
            return decision
    return None
