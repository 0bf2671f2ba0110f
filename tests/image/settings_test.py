"""image settings' own rules, over any value: what passes them reads back in the image config as written."""
from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from mlci.image.settings import ImageSettings, image_problems

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)


@given(name=TEXT, value=TEXT)
def test_an_env_entry_that_passes_splits_back_into_its_name_and_value(name: str, value: str) -> None:
    problems = image_problems(dataclasses.replace(ImageSettings(), env={name: value}))
    if not problems:
        entry = f"{name}={value}"  # as the image config's Env holds it
        assert entry.split("=", 1) == [name, value] and entry.split()[0].startswith(name)
        assert name and "\0" not in entry
    else:
        assert all(p.startswith("image.env") for p in problems)


@given(user=TEXT)
def test_a_user_that_passes_is_one_or_two_fields_without_blanks(user: str) -> None:
    problems = image_problems(dataclasses.replace(ImageSettings(), user=user))
    if not problems:
        fields = user.split(":")
        assert 1 <= len(fields) <= 2 and all(f and f == "".join(f.split()) for f in fields)
        assert all(ord(c) >= 0x20 for c in user)


@given(port=st.integers(min_value=-(1 << 20), max_value=1 << 20))
def test_a_port_passes_exactly_when_it_is_a_tcp_port(port: int) -> None:
    assert (not image_problems(dataclasses.replace(ImageSettings(), port=port))) == (1 <= port <= 65535)


@given(minor=st.integers(min_value=0, max_value=10 ** 6), kind=st.sampled_from(["glibc 2", "musl 1", "glibc 3"]))
def test_a_libc_passes_only_with_few_enough_tags_to_list(minor: int, kind: str) -> None:
    problems = image_problems(dataclasses.replace(ImageSettings(), libc=f"{kind}.{minor}"))
    assert (not problems) == (kind != "glibc 3" and minor <= 99)
