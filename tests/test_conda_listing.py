"""conda/listing.py: a channel's conda packages as the pages and the HTTP API show them."""

from __future__ import annotations

import json

import pytest

from private_channels.conda.listing import snippets
from private_channels.conda.package import version_key
from private_channels.core.ecosystem import Package, path_token_url
from private_channels.cran.listing import snippets as cran_snippets
from private_channels.storage import MemoryStorage

from .conda_packages import demo_index, raw_conda
from .web import PREFIXES, Site


@pytest.fixture(params=PREFIXES)
def site(request: pytest.FixtureRequest) -> Site:
    return Site(MemoryStorage(), request.param)


@pytest.mark.parametrize(
    "ordered",
    [
        ["0.9", "1.0rc1", "1.0", "1.0.1", "1.1", "1.10", "2", "1!0.1"],
        ["1.0a", "1.0b", "1.0"],
        ["2023.1", "2023.10", "2024.1"],
    ],
)
def test_versions_sort_in_condas_order(ordered: list[str]) -> None:
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0") == version_key("1.0.0")


def conda(site: Site, version: str, subdir: str = "noarch", **fields: object) -> str:
    index = demo_index("demo", version, subdir=subdir, **fields)
    filename = f"demo-{version}-0.conda"
    about = json.dumps({"summary": f"Demo {version}.", "home": "https://example.org"}).encode()
    data = raw_conda({"info/index.json": index, "info/about.json": about}, stem=filename[:-6])
    site.upload_r(data, filename, filetype="conda_package")
    return filename


def test_a_package_with_its_files_through_the_api(site: Site) -> None:
    conda(site, "1.0", depends=["python >=3.9"])
    conda(site, "1.1", subdir="linux-64", noarch=False)
    site.api("POST", "channels/team/yank", "root", {"filename": "demo-1.1-0.conda"})
    body = site.api("GET", "channels/team/packages/conda/demo", "team_read").json
    assert body["ecosystem"] == "conda" and body["versions"] == ["1.0", "1.1"]
    # The newest version that is not yanked is the one described.
    assert (body["version"], body["summary"]) == ("1.0", "Demo 1.0.")
    assert dict(body["about"]) == {"License": "MIT", "Home page": "https://example.org"}
    newest, oldest = body["files"]
    assert (newest["filename"], newest["yanked"], newest["url"]) == (
        "demo-1.1-0.conda", "", "linux-64/demo-1.1-0.conda"
    )  # fmt: skip
    assert oldest["details"] == {"Subdir": "noarch", "Build": "0", "Depends": "python >=3.9"}
    # The URL the listing gives is where the channel serves the file.
    headers = {"X-Auth": site.secrets["team_read"]}
    answer = site.app.get(site.url(f"team/{oldest['url']}"), headers=headers)
    assert answer.body.startswith(b"PK")
    assert site.api("GET", "channels/team/packages/conda/nope", "team_read").status_int == 404


def test_the_package_page_shows_conda_files(site: Site) -> None:
    conda(site, "1.0")
    page = site.sign_in("team_read").get(site.url("team/-/packages/conda/demo/"))
    assert "demo-1.0-0.conda" in page.text and "Demo 1.0." in page.text
    assert "conda install -c &#34;http://localhost" in page.text  # escaped in the page


def test_snippets_use_a_placeholder_never_a_token() -> None:
    shown = snippets("https://host/api/repo/team", Package("conda", "demo", "demo", ("1.0",)))
    text = "\n".join(s.text + s.note for s in shown)
    assert 'channels = ["https://host/api/repo/team", "conda-forge"]' in text
    assert 'conda install -c "https://host/api/repo/t/$TOKEN/team" demo' in text
    assert "curl -F filetype=conda_package -F content=@demo-1.0-0.conda" in text


@pytest.mark.parametrize(
    ("channel_url", "cut"),
    [
        ("https://host/api/repo/team", ("https://host/api/repo/t/", "/team")),
        ("http://localhost:8000/team/", ("http://localhost:8000/t/", "/team")),
        ("https://h/deep/er/mount/x", ("https://h/deep/er/mount/t/", "/x")),
    ],
)
def test_the_path_token_url_is_cut_where_the_token_goes(
    channel_url: str, cut: tuple[str, str]
) -> None:
    """conda's channel URL and R's repos (the clients that cannot send a header) both
    put the token in the path as the SPEC has it: P/t/<TOKEN>/<CHANNEL>."""
    assert path_token_url(channel_url) == cut
    r_snippets = "\n".join(s.text for s in cran_snippets(channel_url, None))
    assert f'paste0("{cut[0]}", Sys.getenv("PRIVATE_CHANNELS_TOKEN"), "{cut[1]}")' in r_snippets
    conda_snippets = "\n".join(s.text for s in snippets(channel_url, None))
    assert f'conda install -c "{cut[0]}$TOKEN{cut[1]}" PACKAGE' in conda_snippets
