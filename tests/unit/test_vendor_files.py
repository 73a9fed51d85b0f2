"""The vendored third-party files are the ones the vendor README lists, byte for byte, each with its licence."""

from __future__ import annotations

import hashlib
import re

from planexe_ax.ws_gateway.dashboard import STATIC_DIR

VENDOR = STATIC_DIR / "vendor"


def listed_digests() -> dict[str, str]:
    text = (VENDOR / "README.md").read_text(encoding="utf-8")
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, flags=re.MULTILINE)}


def test_every_vendored_script_and_style_has_its_listed_sha256() -> None:
    digests = listed_digests()
    shipped = {p.name for p in VENDOR.iterdir() if p.suffix in (".js", ".css")}
    assert shipped == set(digests)
    for name, digest in digests.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_swagger_ui_ships_with_its_licence_and_notice() -> None:
    assert "Apache License" in (VENDOR / "swagger-ui-LICENSE.txt").read_text(encoding="utf-8")
    assert "SmartBear" in (VENDOR / "swagger-ui-NOTICE.txt").read_text(encoding="utf-8")
