"""A person with only a browser and a token: Debian's chromium, driven by selenium.

The browser signs in, browses, filters, reads how to install a package, uploads a wheel
and an R package, yanks a release, creates a token and revokes it, against a real
``private-channels serve``; each step is checked where the clients look (the simple
index, PACKAGES, the token itself).  The screenshots it takes of the main pages are the
ones in docs/ (``scripts/screenshots.sh`` sets ``PRIVATE_CHANNELS_SCREENSHOTS``).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .packages import make_wheel, metadata_text
from .support import LiveServer, live_server, require_client
from .test_cran_description import source_package

pytestmark = pytest.mark.e2e

# Without these, chromium waits on connections to Google's services, which a closed
# network never answers; a fresh profile keeps runs apart.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium = require_client("chromium")
    driver_path = require_client("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(str(tmp_path / "data"), tmp_path) as running:
        running.cli("channel", "create", "data-team")
        running.cli("channel", "create", "open-source", "--public")
        yield running


def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PRIVATE_CHANNELS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def json_index(server: LiveServer, token: str, project: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        f"{server.url}/data-team/simple/{project}/",
        headers={"X-Auth": token, "Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)  # type: ignore[no-any-return]


def status_with(server: LiveServer, token: str) -> int:
    request = urllib.request.Request(f"{server.url}/data-team/simple/", headers={"X-Auth": token})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_a_person_with_a_browser_and_a_token(
    browser,
    server: LiveServer,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = screenshots(tmp_path)
    token = server.token("*", "admin")
    wait = WebDriverWait(browser, 20)
    flash = lambda: wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".flash"))).text  # noqa: E731

    def click(element) -> None:  # type: ignore[no-untyped-def]
        """Click something that loads a page, and wait until the old one is gone."""
        page = browser.find_element(By.TAG_NAME, "html")
        element.click()

        def gone(_: object) -> bool:
            # Not ec.staleness_of: asked while the new page replaces the old one,
            # chromedriver may answer "Node with given id does not belong to the
            # document", a WebDriverException but no StaleElementReferenceException.
            try:
                page.is_enabled()
            except WebDriverException:
                return True
            return False

        wait.until(gone)
        wait.until(lambda _: browser.execute_script("return document.readyState") == "complete")

    # A private channel sends the browser to the sign-in form, never to a Basic popup.
    browser.get(f"{server.url}/data-team/")
    assert browser.current_url.startswith(f"{server.url}/-/login?next=")
    browser.save_screenshot(str(shots / "sign-in.png"))
    browser.find_element(By.NAME, "token").send_keys(token)
    click(browser.find_element(By.CSS_SELECTOR, "form.login button"))
    assert browser.current_url == f"{server.url}/data-team/"
    assert token not in browser.page_source

    # Upload a wheel (with a Markdown description) and an R package through the page.
    upload_dir = tmp_path / "upload"
    upload_dir.mkdir()
    metadata = metadata_text("acme-utils", "1.0", summary="Utilities of the data team.")
    metadata = metadata.rstrip("\n") + (
        "\nDescription-Content-Type: text/markdown\n\n# acme-utils\n\nHelpers for **reports**."
        "\n\n```python\nimport acme_utils\n```\n"
    )
    wheel = make_wheel(upload_dir, "acme-utils", "1.0", metadata=metadata)
    second = make_wheel(upload_dir, "acme-utils", "1.1")
    tarball = upload_dir / "acmeplots_0.3.tar.gz"
    tarball.write_bytes(
        source_package("acmeplots", "0.3", Title="Plots for Acme", Depends="R (>= 4.1)")
    )
    click(browser.find_element(By.LINK_TEXT, "Upload a package"))
    for kind, path in (("python", wheel), ("python", second), ("cran_source_package", tarball)):
        browser.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()
        browser.find_element(By.NAME, "content").send_keys(str(path))
        if path == tarball:
            browser.save_screenshot(str(shots / "upload.png"))
        click(browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]"))
        assert flash().startswith("Uploaded "), path
    assert [f["filename"] for f in json_index(server, token, "acme-utils")["files"]] == [
        wheel.name,
        second.name,
    ]

    # Browse and filter the channel.
    browser.get(f"{server.url}/data-team/")

    def rows() -> list[str]:
        found = browser.find_elements(By.CSS_SELECTOR, "table.filterable tr[data-name]")
        return [r.get_attribute("data-name") for r in found if r.is_displayed()]

    assert rows() == ["acme-utils", "acmeplots"]
    browser.save_screenshot(str(shots / "channel.png"))
    box = browser.find_element(By.ID, "filter")
    box.send_keys("plots")
    wait.until(lambda _: rows() == ["acmeplots"])  # as you type (pages.js)
    click(browser.find_element(By.CSS_SELECTOR, "form.filter button"))  # on the server too
    assert browser.current_url.endswith("?q=plots")
    assert rows() == ["acmeplots"]

    # Read how to install a package: the real URL, a placeholder for the token.
    browser.get(f"{server.url}/data-team/")
    click(browser.find_element(By.LINK_TEXT, "acmeplots"))
    install = browser.find_element(By.CSS_SELECTOR, ".snippet pre").text
    assert install.startswith('install.packages("acmeplots", repos = c(getOption("repos"),')
    assert f'"{server.url}/t/", Sys.getenv("PRIVATE_CHANNELS_TOKEN"), "/data-team"' in install
    assert "Depends R (>= 4.1)" in browser.find_element(By.TAG_NAME, "table").text
    browser.get(f"{server.url}/data-team/")
    click(browser.find_element(By.LINK_TEXT, "acme-utils"))
    install = browser.find_element(By.CSS_SELECTOR, ".snippet pre").text
    assert install == (
        f'pip install --index-url "http://__token__:$TOKEN@{server.url.removeprefix("http://")}'
        '/data-team/simple/" acme-utils'
    )
    click(browser.find_element(By.LINK_TEXT, "1.0"))  # the version with a description
    assert browser.find_element(By.CSS_SELECTOR, ".description strong").text == "reports"

    # Yank a release; pip's index says so at once.
    row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{second.name}']]")
    row.find_element(By.NAME, "reason").send_keys("Breaks the nightly report")
    click(row.find_element(By.XPATH, ".//button[text()='Yank']"))
    assert flash() == f"Yanked {second.name}."
    browser.save_screenshot(str(shots / "package.png"))
    files = json_index(server, token, "acme-utils")["files"]
    assert [f["yanked"] for f in files] == [False, "Breaks the nightly report"]

    # Create a token (shown once), check that it works, revoke it.
    click(browser.find_element(By.LINK_TEXT, "Tokens"))
    browser.find_element(By.CSS_SELECTOR, "input[name=channel][value=data-team]").click()
    browser.find_element(By.NAME, "note").send_keys("laptop")
    browser.find_element(By.NAME, "expires").send_keys("30d")
    click(browser.find_element(By.XPATH, "//button[text()='Create token']"))
    secret = wait.until(ec.presence_of_element_located((By.ID, "new-token"))).text
    assert len(secret) == 48
    browser.save_screenshot(str(shots / "tokens.png"))
    assert status_with(server, secret) == 200
    browser.get(f"{server.url}/-/tokens")
    assert secret not in browser.page_source
    new_row = browser.find_element(By.XPATH, "//tr[td[text()='laptop']]")
    click(new_row.find_element(By.XPATH, ".//button[text()='Revoke']"))
    assert flash().startswith("Revoked token ")
    assert status_with(server, secret) == 401

    # Sign out: the pages ask for a token again.
    click(browser.find_element(By.XPATH, "//button[text()='Sign out']"))
    assert "/-/login" in browser.current_url
    browser.get(f"{server.url}/data-team/")
    assert browser.current_url.startswith(f"{server.url}/-/login")
    for name in ("sign-in", "upload", "channel", "package", "tokens"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert token not in server.log_text() and secret not in server.log_text()
