"""Hostile input: every file the gate reads gives values, a finding, or one clear error; never a crash."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.validate.cli import main
from tools.validate.loader import InputError, Limits, compose_with_lines, decode, load_text, read_text
from tools.validate.render import RenderError, RenderOptions, render

TREE = Path(__file__).parent / "fixtures" / "tree"


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        text += f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
        previous = name
    return text


def load_error(text: str, limits: Limits | None = None) -> str:
    with pytest.raises(InputError) as caught:
        load_text(text, "input.yaml", limits or Limits())
    return str(caught.value)


def test_alias_bomb_is_refused_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        message = load_error(billion_laughs())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == "input.yaml:6: aliases expand to more than 100000 nodes (alias bomb?)"
    assert peak < 50 * 1024 * 1024


def test_a_few_aliases_are_fine_and_merge_keys_work() -> None:
    loaded = load_text("base: &base {cpu: 1, memory: 2Gi}\nlimits:\n  <<: *base\n  cpu: 2\n", "in.yaml")
    assert loaded.documents == [{"base": {"cpu": 1, "memory": "2Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}}]


def test_recursive_alias_is_refused() -> None:
    assert load_error("a: &a [1, *a]\n") == "input.yaml:1: recursive alias *a"


DEEP = "input.yaml:1: nested more than 128 levels deep"
# newer libyaml builds stop flow nesting themselves, at 1000 levels
LIBYAML_DEEP = "input.yaml:1: invalid YAML: exceeded maximum nesting depth"


def test_deep_flow_nesting_is_refused() -> None:
    assert load_error("[" * 129 + "]" * 129) == DEEP
    # PyYAML's own C composer recurses per level and kills the interpreter long before a million
    assert load_error("[" * 1_000_000 + "]" * 1_000_000) in (DEEP, LIBYAML_DEEP)


def test_deep_block_nesting_is_refused() -> None:
    assert load_error("- " * 200_000 + "x\n") == DEEP


def test_nesting_within_the_limit_loads() -> None:
    assert load_text("[" * 128 + "]" * 128, "in.yaml").documents[0] is not None


def test_duplicate_keys_are_reported_with_their_line() -> None:
    loaded = load_text("a: 1\nb:\n  c: 1\n  c: 2\n---\nd: 1\nd: 3\n", "in.yaml")
    assert [(d.line, d.key, d.document) for d in loaded.duplicates] == [(4, "c", 0), (7, "d", 1)]
    assert loaded.documents == [{"a": 1, "b": {"c": 2}}, {"d": 3}]


def test_invalid_utf8_names_the_line() -> None:
    with pytest.raises(InputError) as caught:
        decode(b"a: 1\nb: 2\nc: \xff\xfe\n", "in.yaml")
    assert str(caught.value) == "in.yaml:3: not valid UTF-8 (byte 0xff)"


def test_binary_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        decode(bytes(range(256)) * 4, "in.yaml")
    assert str(caught.value) == "in.yaml:2: not valid UTF-8 (byte 0x80)"  # 0x0a, a newline, comes first
    assert load_error("\x00\x01\x02") == "input.yaml:1: not YAML text: character '\\x00': " \
        "control characters are not allowed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: b\n---\n- c\n---\n: : :\n", "input.yaml:5: invalid YAML: did not find expected key"),
        ("a:\n\tb: 1\n", "input.yaml:2: invalid YAML: found character that cannot start any token"),
        ("? [a]\n: 1\n", "input.yaml:1: a mapping key must be a scalar"),
        ("a: !!python/object:os.system x\n",
         "input.yaml:1: unsupported tag tag:yaml.org,2002:python/object:os.system on a scalar"),
        ("a: !!int xyz\n",
         "input.yaml:1: invalid int value 'xyz': invalid literal for int() with base 10: 'xyz'"),
        ("a: !!set x\n", "input.yaml:1: unsupported tag tag:yaml.org,2002:set on a scalar"),
        ("a: *nowhere\n", "input.yaml:1: unknown alias *nowhere"),
    ],
)
def test_junk_gives_one_line_with_file_and_line(text: str, message: str) -> None:
    assert load_error(text) == message


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            read_text(big, "big.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == "big.yaml: file is 52428800 bytes, over the 20971520-byte limit"
    assert peak < 1024 * 1024


def test_lines_of_nested_values() -> None:
    (document,) = compose_with_lines("# c\nkind: X\nspec:\n  list:\n    - a\n    - b: 1\n", "in.yaml")
    spec = document.value["spec"]
    items = spec.value["list"].value
    assert (document.line, spec.key_line, items[0].line, items[1].value["b"].key_line) == (2, 3, 5, 6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_load_or_give_an_input_error(data: bytes) -> None:
    try:
        load_text(decode(data, "fuzz.yaml"), "fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml")
        assert "\n" not in str(exc)


YAMLISH = st.lists(
    st.sampled_from([*"ab:-[]{},&*!?|>'\"#%@`\n\t 0.~<=", "&x ", "*x", "<<: ", "!!int ", "---\n", "\n  "]),
    max_size=120,
).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_arbitrary_yamlish_text_loads_or_gives_an_input_error(text: str) -> None:
    for with_lines in (False, True):
        try:
            if with_lines:
                compose_with_lines(text, "fuzz.yaml")
            else:
                load_text(text, "fuzz.yaml")
        except InputError as exc:
            assert str(exc).startswith("fuzz.yaml")
            assert "\n" not in str(exc)


# --- through the command line -----------------------------------------------------------------

HOSTILE_FILES: dict[str, bytes] = {
    "alias-bomb": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n"
    + billion_laughs().replace("\n", "\n  ").encode().replace(b"a: &a", b"  a: &a", 1),
    "duplicate-key": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  a: '1'\n  a: '2'\n",
    "invalid-utf8": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\ndata:\n  a: \"\xff\xfe\"\n",
    "binary": bytes(range(256)) * 8,
    "deep": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n  a: " + b"[" * 20000
    + b"]" * 20000 + b"\n",
    "junk": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: j\n---\n- a list\n---\nplain scalar\n",
}

EXPECTED_ERRORS = {
    "alias-bomb": "gate: cannot render overlays/hostile: overlays/hostile/resource.yaml:",
    "duplicate-key": 'gate: cannot render overlays/hostile: kustomize said: error: ',
    "invalid-utf8": "gate: cannot render overlays/hostile: overlays/hostile/resource.yaml:6: not valid UTF-8",
    "binary": "gate: cannot render overlays/hostile: overlays/hostile/resource.yaml:2: not valid UTF-8",
    # refused before kustomize runs: libyaml's own depth limit (1000) stops the bounded loader
    "deep": "gate: cannot render overlays/hostile: overlays/hostile/resource.yaml:6: "
            "invalid YAML: exceeded maximum nesting depth",
    "junk": "gate: cannot render overlays/hostile: kustomize said: error: ",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_manifests_exit_2_with_one_line(tree: Path, case: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    overlay = tree / "overlays" / "hostile"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: [resource.yaml]\n")
    (overlay / "resource.yaml").write_bytes(HOSTILE_FILES[case])

    code = main(["validate", str(overlay), "--repo-root", str(tree)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith(EXPECTED_ERRORS[case])
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_a_50_mb_manifest_is_refused_before_kustomize_runs(tree: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    overlay = tree / "overlays" / "hostile"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: [big.yaml]\n")
    with (overlay / "big.yaml").open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)

    code = main(["validate", str(overlay), "--repo-root", str(tree)])

    assert code == 2
    assert capsys.readouterr().err == (
        "gate: cannot render overlays/hostile: overlays/hostile/big.yaml: file is 52428800 bytes, "
        "over the 20971520-byte limit\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (billion_laughs().encode(), "gate.yaml:6: aliases expand to more than 100000 nodes (alias bomb?)"),
        (b"fail_level: \xff\n", "gate.yaml:1: not valid UTF-8 (byte 0xff)"),
        (b"[" * 200, "gate.yaml:1: nested more than 128 levels deep"),
        (b"a: 1\n---\nb: 2\n", "gate.yaml: expected one YAML document, found 2"),
        (bytes(range(1, 32)),
         "gate.yaml:1: not YAML text: character '\\x01': control characters are not allowed"),
    ],
)
def test_hostile_config_exits_2(tree: Path, content: bytes, expected: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "gate.yaml").write_bytes(content)

    code = main(["validate", str(tree / "overlays" / "dev"), "--repo-root", str(tree)])

    assert code == 2
    assert capsys.readouterr().err == f"gate: {expected}\n"


@pytest.mark.parametrize(
    ("printed", "message"),
    [
        ("- a\n- b\n", "cannot render overlays/dev: rendered document 1 is not a mapping"),
        (billion_laughs(), "cannot render overlays/dev: rendered output is not acceptable YAML: "
                           "aliases expand to more than 100000 nodes (alias bomb?)"),
        ("a: [\n", "cannot render overlays/dev: rendered output is not acceptable YAML: "
                   "invalid YAML: did not find expected node content"),
    ],
)
def test_junk_from_kustomize_is_a_render_error(tmp_path: Path, printed: str, message: str) -> None:
    script = tmp_path / "fake_kustomize.py"
    script.write_text(f"import sys\nsys.stdout.write({printed!r})\n")
    options = RenderOptions(command=(sys.executable, str(script)))

    with pytest.raises(RenderError) as caught:
        render(TREE / "overlays" / "dev", TREE, options)
    assert str(caught.value) == message


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSONISH, min_size=1, max_size=3), st.sampled_from([None, True, False]))
def test_values_equal_pyyaml_safe_load(values: list[object], flow: bool | None) -> None:
    text = yaml.safe_dump_all(values, default_flow_style=flow)
    expected = [v for v in yaml.safe_load_all(text) if v is not None]
    assert load_text(text, "dump.yaml").documents == expected
