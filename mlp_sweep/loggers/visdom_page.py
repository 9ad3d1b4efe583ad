"""visdom's web page from the npm registry, every byte checked against a hash pinned here.

visdom's package ships its own bundle only; the page also loads plotly, react, jquery,
bootstrap, d3, ... which visdom's own server downloads from CDNs, unchecked. Each of those
files is also a file of an npm package, so `install_page` takes them from the npm registry
(or a mirror of it) and writes them into visdom's static folder, where the server hands them
to the browser as its own scripts. What is trusted is what is pinned below, nothing the
registry says at install time:

- PACKAGES: each tarball's sha512 as npm published it (`npm view jquery@3.1.1 dist.integrity`
  prints the same string), checked before the archive is opened;
- PAGE_FILES: each file's sha512, computed from those tarballs once they had matched npm's
  value, checked before the file is written. `page_problems` checks an installed folder
  against the same values.

Every file is checked before the first is written, and each is written whole (temp file,
rename): a tarball or file that differs leaves the folder as it was and is named in the error.
Standard library only: the caller names the folder (visdom's static folder).
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlp_sweep.training.writes import write_bytes_atomic

NPM = "https://registry.npmjs.org"
# The biggest tarball (plotly's) is 1.1 MB: a registry that sends more is not sending it.
MAX_TARBALL = 32 * 1024 * 1024

# npm package@version -> its tarball's sha512 (npm's dist.integrity): the versions visdom
# 0.2.4's build.py downloads from CDNs.
# fmt: off
PACKAGES = {
    "jquery@3.1.1":
        "sha512-zuiWRmx65Kd1oFGdWLvAjbsumdOBFvs3r1vuqCyKFF79R7exBHNbiNEJ8LR+xkzgfxqBznMD/4Cv6PHXS6mvEw==",
    "bootstrap@3.3.7":
        "sha512-qcFaisBrcBhTFkz1IUnGDYnX6ZWfFzH8zOixUDtHW9Ip+r+7MfMFav2rzy7cIHc7rgIg7xjhWBoo1mS/U26j4g==",
    "react@16.2.0":
        "sha512-ZmIomM7EE1DvPEnSFAHZn9Vs9zJl5A9H7el0EGTE6ZbW9FKe/14IYAlPbC8iH25YarEQxZL+E8VW7Mi7kfQrDQ==",
    "react-dom@16.2.0":
        "sha512-zpGAdwHVn9K0091d+hr+R0qrjoJ84cIBFL2uU60KvWBPfZ7LPSrfqviTxGHWN0sjPZb2hxWzMexwrvJdKePvjg==",
    "react-modal@3.1.10":
        "sha512-7b77AGWCkdg0YOf/qcYIGCpuwbxRwOA8P3UrUovk4grUNv+idOmHovJAx/Dcd3fuwHtgixxVjpcjVG60985MSA==",
    "plotly.js-dist-min@2.11.1":
        "sha512-F9WWNht0D3yBLZGHbLoJNfvplXvy+GUPSsA/lCbMuYd/UwzSu6Vmyprxlps9Einw1LDS1hYBrJeioK0lE3ieXA==",
    "sjcl@1.0.7":
        "sha512-xQbiwKfiAj6vyk44ANJ5RRymALRdRZOuRoKNYkWUU404p/RFXmMaay1Z5vRn30GJjkD+psox4Jd38jZojSuNYA==",
    "layout-bin-packer@1.4.0":
        "sha512-dQOZnajbOBGIcS9YlzKrkRtMCGa2oEpyf1zGRn93suphSvPclJe54Sbgtb053GJ21DUk84IBzaeQvjn+Gb10fA==",
    "d3@3.5.17":
        "sha512-yFk/2idb8OHPKkbAL8QaOaqENNoMhIaSHZerk3oQsECwkObkCpJyjYwCe+OHiq6UEdhe1m8ZGARRRO3ljFjlKg==",
    "d3-selection-multi@1.0.1":
        "sha512-mEnRkJ6A+Otd1LuRPV3az+s/RLDmIEhuz/MnT21O2nPcWNH7wZotdIlRjMA4Wpr+n7AESQ5fD8v1J3nL2Mnw9g==",
    "save-svg-as-png@1.4.17":
        "sha512-7QDaqJsVhdFPwviCxkgHiGm9omeaMBe1VKbHySWU6oFB2LtnGCcYS13eVoslUgq6VZC6Tjq/HddBd1K6p2PGpA==",
    "react-resizable@1.4.6":
        "sha512-4zLORO51u0/mlDsrVCAA4p266d+3mb2ZMNdiWOotAh/PdnfrRzZhgePmKE08PSQatXVIfMjmyD+Sapay8tmxdQ==",
    "react-grid-layout@0.16.3":
        "sha512-ytP92EqUjqcFhGzvdeKrK610dQ04GdFwRCWtD6PoeL5wR3liETcFISO7k8RBqnosV86JtXf/DwIfrL0COLs0gg==",
    "classnames@2.2.5":
        "sha512-DTt3GhOUDKhh4ONwIJW4lmhyotQmV2LjNlGK/J2hkwUcqcbKkCLAdJPtxQnxnlc7SR3f1CEXCyMmc7WLUsWbNA==",
}
# fmt: on


@dataclass(frozen=True)
class PageFile:
    package: str  # a key of PACKAGES
    member: str  # its path in the package's tarball, under package/
    target: str  # where visdom's page asks for it, under the static folder
    sha512: str  # the file's own hash, as npm writes one ("sha512-" + base64)


# fmt: off
PAGE_FILES = (
    PageFile("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js",
             "sha512-U6K1YLIFUWcvuw5ucmMtT9HH4t0uz3M366qrF5y4vnyH6dgDzndlcGvH/Lz5k8NFh80SN95aJ5rqGZEdaQZ7ZQ=="),
    PageFile("bootstrap@3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js",
             "sha512-iztkobsvnjKfAtTNdHkGVjAYTrrtlC7mGp/54c40wowO7LhURYl3gVzzcEqGl/qKXQltJ2HwMrdLcNUdo+N/RQ=="),
    PageFile("bootstrap@3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css",
             "sha512-6MXa8B6uaO18Hid6blRMetEIoPqHf7Ux1tnyIQdpt9qI5OACx7C+O3IVTr98vwGnlcg0LOLa02i9Y1HpVhlfiw=="),
    PageFile("bootstrap@3.3.7", "dist/fonts/glyphicons-halflings-regular.eot",
             "fonts/glyphicons-halflings-regular.eot",
             "sha512-78kQyWufXFjqEahFd89grplVA7HuZwu359SkE7dAN2mSD4JgC1gfG9TuA9ccdsFSVfCXLtZq2WlIe1pAQ/RyxA=="),
    PageFile("bootstrap@3.3.7", "dist/fonts/glyphicons-halflings-regular.woff2",
             "fonts/glyphicons-halflings-regular.woff2",
             "sha512-OBGAT1bsPILwvvNd4KklDlRqHjV/tZ4nhPYQ1jj+w1Wie0gOP3liQ8Dj03Q74+rdqPkGTCtbSVd+FrfkDvzbgw=="),
    PageFile("bootstrap@3.3.7", "dist/fonts/glyphicons-halflings-regular.woff",
             "fonts/glyphicons-halflings-regular.woff",
             "sha512-9TZqslWv7+P+BhUOhQnndrVhj/UP4+D6jk1xXWRbHkTd860YXiHfGiduCLNwf1WGbLKoPS8yWlaIX8uOV6dKZw=="),
    PageFile("bootstrap@3.3.7", "dist/fonts/glyphicons-halflings-regular.ttf",
             "fonts/glyphicons-halflings-regular.ttf",
             "sha512-KwZuBlBu8g1paY03zexVIXbvP2ShFRqZodAtctOc4SxP9hbcCKr7LMrqEu/XofRrcBUWpVnlaQxXo0sSduiCJg=="),
    PageFile("bootstrap@3.3.7", "dist/fonts/glyphicons-halflings-regular.svg",
             "fonts/glyphicons-halflings-regular.svg",
             "sha512-wud+qzJ68UaQl8MbwNr4IMBmsCIgWdj/Ds68qXS2K3U16W8fNWZDsrYnY6kk0EDkrJsgl+HeLCIiZBH96HI3Qw=="),
    PageFile("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js",
             "sha512-UvpgjX5rsZgte6I2Tg3TYyGfVzMXfMJ5QzCHjnm6l7z10BoJ8jGD/5SHRcktpQ1g2Mja9AaDJyDzkSvIX+Iy8w=="),
    PageFile("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js",
             "sha512-V9/oc5CRGZlYWPNyf8iLd8Na5hi+EViRC74RKMSy0UB+BH3ZA3JEUsbQh3k/SF3aPKbpNIUpiBeujszyGb/6aw=="),
    PageFile("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js",
             "sha512-qC6mIjfG6BjWP00t/x5lJoTiknVEoZK07QI7WgydbmTIM+VYyMdrGvJgH96P9OoHA4HfmNFGR4RApf7zbJXHeQ=="),
    PageFile("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js",
             "sha512-g9MNNbVCgICg4cD9syxTtEVBqoRkneMPkKCG4/I9zi3MQTAsYZc+ryKpFhK5bpzaHAM8GB1RN7PTQ+tH4b1DSQ=="),
    PageFile("sjcl@1.0.7", "sjcl.js", "js/sjcl.js",
             "sha512-J2eNenPwyfXkMVNMFz9Q54kKfYi5AA3mQWpNgtjSJzsKHtpbhUt/7bvcjGwwmzE8ZUVWMI/ndagIX1lG+SfxGA=="),
    PageFile("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js",
             "sha512-vQo0DmN4P5PnBlK0d/6g78t1UMeqndroXlGm4aPKlCMM92YfL8BnphKjRnZizQrkr5nvETSv53aP4C/6Z48eCg=="),
    PageFile("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js.map",
             "js/layout-bin-packer.js.map",
             "sha512-udo+IcC1nKfnE6avMFv+h9nfcyhyov31hjgA5TrcPXL03xUOrsIRmPNB7JsKQtYb+fJdzELjU16glqhi/F8zcg=="),
    PageFile("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js",
             "sha512-oJp0DdQuQQrRsKVly+Ww6fAN1GwJN7d1bi8UubpEbzDUh84WrJ2CFPBnT4LqBCcfqTcHR5OGXFFhaPe3g1/bzQ=="),
    PageFile("d3-selection-multi@1.0.1", "build/d3-selection-multi.js",
             "js/d3-selection-multi.v1.js",
             "sha512-L7usl7vP5ac2gl5SR3N37ciuS91sUPtBasUJcHUygcIoEF1ydAzhGTj2hwMjWNtkaupVi+C7Azz6+1dKKnV3OQ=="),
    PageFile("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js",
             "sha512-eROF+rLuEUiVuYGmMqhsT8/OwSLcVw5RLjhhJrWLTznvDcwG0WtXrV6w7Ko4Nw7LyWzDZOGlQjfzQd7kUYLQcQ=="),
    PageFile("react-resizable@1.4.6", "css/styles.css", "css/react-resizable-styles.css",
             "sha512-pbpX9nxFuTzPDoWu5nc2OpJnykUEUlJCeKolOJNMqi1CWzrZ3lNWCPWYNyn/Jfue3Ji3ls1jnW5GM+XWiMWTCQ=="),
    PageFile("react-grid-layout@0.16.3", "css/styles.css", "css/react-grid-layout-styles.css",
             "sha512-CIr7M6ylR262ubrJXHIxbFl3HOqMU7n0xkKbs7Cuco5lGLReg4Va8uIT+ec0lZ2pMfBCFC/mKuyAtsDgvLcBfw=="),
    PageFile("classnames@2.2.5", "index.js", "fonts/classnames",
             "sha512-eSNKnbFkhoj2CYhl4rAowY2Fwx0xPZ9jlO9yGlZey0quR8nXPRT8CLmBcIz/p74ml4jviMxKme6BZTihwKSFsg=="),
)
# fmt: on


class PageError(Exception):
    """A file of the page that cannot be installed as pinned; one line naming it."""


def sha512(data: bytes) -> str:
    """data's hash as npm writes an integrity value."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def tarball_url(registry: str, package: str) -> str:
    name, _, version = package.rpartition("@")
    return f"{registry.rstrip('/')}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def download(url: str) -> bytes:
    """The body at url, at most MAX_TARBALL bytes."""
    with urllib.request.urlopen(url, timeout=60) as answer:
        data: bytes = answer.read(MAX_TARBALL + 1)
    if len(data) > MAX_TARBALL:
        raise PageError(f"{url} sends more than {MAX_TARBALL} bytes; no npm tarball of the page")
    return data


def page_problems(folder: Path) -> list[str]:
    """The page's files missing from folder, or not the pinned ones (the targets' names)."""
    problems = []
    for file in PAGE_FILES:
        try:
            matches = sha512((folder / file.target).read_bytes()) == file.sha512
        except OSError:
            matches = False
        if not matches:
            problems.append(file.target)
    return problems


def verified_files(
    registry: str = NPM, fetch: Callable[[str], bytes] = download
) -> dict[str, bytes]:
    """Every file of the page (target -> content), each tarball and file matching its pin."""
    files = {}
    for package, pinned in PACKAGES.items():
        wanted = [file for file in PAGE_FILES if file.package == package]
        url = tarball_url(registry, package)
        data = fetch(url)
        if sha512(data) != pinned:
            raise PageError(
                f"{url} is not the tarball npm published for {package} (its sha512 is not the "
                f"pinned one), for {', '.join(f.target for f in wanted)}; nothing was written"
            )
        # Opened only once it matched npm's hash: no archive from elsewhere is ever parsed.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for file in wanted:
                member = archive.extractfile(f"package/{file.member}")
                content = member.read() if member is not None else b""
                if sha512(content) != file.sha512:
                    raise PageError(
                        f"{file.target} ({package}'s {file.member}) is not the pinned file "
                        "(its sha512 differs); nothing was written"
                    )
                files[file.target] = content
    return files


def install_page(
    folder: Path, version: str, registry: str = NPM, fetch: Callable[[str], bytes] = download
) -> None:
    """Every file of the page into folder, checked before the first is written, each written
    whole; then `version.built` (visdom's mark that its page needs no download) with version."""
    for target, content in verified_files(registry, fetch).items():
        write_bytes_atomic(folder / target, content)
    write_bytes_atomic(folder / "version.built", version.encode())
