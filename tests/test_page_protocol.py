"""The page's copy of the wire protocol (web/src/protocol.ts) equals webterm.protocol:
every close code, name for name, and the constants both sides must agree on. TypeScript
cannot import the Python enum, so this test is what keeps the two from drifting."""

from __future__ import annotations

import re
from pathlib import Path

from webterm.protocol import (
    MAX_CONTROL_MESSAGE_BYTES,
    MAX_FILE_BYTES,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    CloseCode,
)

PROTOCOL_TS = Path(__file__).resolve().parents[1] / "web" / "src" / "protocol.ts"


def _source() -> str:
    return PROTOCOL_TS.read_text(encoding="utf-8")


def _close_codes(source: str) -> dict[str, int]:
    block = re.search(r"export const CloseCode = \{\n(.*?)\n\} as const;", source, re.S)
    assert block is not None, "protocol.ts has no `export const CloseCode = { ... } as const;`"
    codes: dict[str, int] = {}
    for line in block.group(1).splitlines():
        entry = re.fullmatch(r"\s*([A-Z_]+): (\d+),(\s*//.*)?", line)
        assert entry is not None, f"not a `NAME: code,` line in CloseCode: {line!r}"
        codes[entry.group(1)] = int(entry.group(2))
    return codes


def _constant(source: str, name: str) -> str:
    found = re.search(rf"^export const {name} = (.+?);", source, re.M)
    assert found is not None, f"protocol.ts does not export {name}"
    return found.group(1)


def test_every_close_code_is_the_pythons() -> None:
    assert _close_codes(_source()) == {code.name: code.value for code in CloseCode}


def test_the_shared_constants_are_the_pythons() -> None:
    source = _source()
    assert _constant(source, "SUBPROTOCOL") == f'"{SUBPROTOCOL}"'
    assert _constant(source, "TOKEN_SUBPROTOCOL_PREFIX") == f'"{TOKEN_SUBPROTOCOL_PREFIX}"'
    assert int(_constant(source, "MAX_CONTROL_MESSAGE_BYTES")) == MAX_CONTROL_MESSAGE_BYTES
    assert int(_constant(source, "MAX_FILE_BYTES")) == MAX_FILE_BYTES


def test_a_drifted_code_is_caught() -> None:
    """The parser reads what it should: a changed value, a missing and an extra name."""
    source = _source()
    python = {code.name: code.value for code in CloseCode}
    changed = source.replace("SUPERSEDED: 4409,", "SUPERSEDED: 4408,")
    assert _close_codes(changed) != python
    missing = re.sub(r"\n\s*GOING_AWAY: 1001,[^\n]*", "", source)
    assert _close_codes(missing) != python
    extra = source.replace("NORMAL: 1000,", "NORMAL: 1000,\n  EXTRA: 4000,")
    assert _close_codes(extra) != python
