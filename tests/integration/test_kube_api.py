"""The API emulation finds objects by key and by namespace (not by scanning them all) with the same answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube_api import ApiServer


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        for ns in ("a", "b"):
            server.create("v1", "namespaces", None, {"metadata": {"name": ns}})
        yield server


def pod(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": []}}


def names(objects: list[dict]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


def test_lists_answer_by_namespace_and_selector(api: ApiServer) -> None:
    for i in range(6):
        api.create("v1", "pods", "a", pod(f"p{i}", job=f"j{i % 2}", **({"extra": "1"} if i < 2 else {})))
    api.create("v1", "pods", "b", pod("p0", job="j0"))
    api.create("v1", "configmaps", "a", {"metadata": {"name": "p9", "labels": {"job": "j0"}}})

    assert names(api.list("v1", "pods", "a")) == ["p0", "p1", "p2", "p3", "p4", "p5"]
    assert names(api.list("v1", "pods", "b")) == ["p0"]
    assert len(api.call("GET", "/api/v1/pods")["items"]) == 7  # every namespace
    assert names(api.list("v1", "pods", "a", "job=j0")) == ["p0", "p2", "p4"]
    assert names(api.list("v1", "pods", "a", "job=j0,extra")) == ["p0"]
    assert names(api.list("v1", "pods", "a", "job!=j0,!extra")) == ["p3", "p5"]
    assert api.list("v1", "pods", "missing") == []
    assert names(api.stored("v1", "pods", "a")) == names(api.list("v1", "pods", "a"))


def test_keyed_reads_and_writes_among_many_objects(api: ApiServer) -> None:
    for i in range(20):
        api.create("v1", "pods", "a" if i % 2 else "b", pod(f"p{i}", n=str(i)))

    assert api.get("v1", "pods", "a", "p7")["metadata"]["labels"] == {"n": "7"}
    assert api.get("v1", "pods", "b", "p7") is None  # same name, other namespace
    patched = api.patch("v1", "pods", "a", "p7", {"metadata": {"labels": {"n": "seven"}}})
    assert patched["metadata"]["labels"] == {"n": "seven"}
    assert names(api.list("v1", "pods", "a", "n=seven")) == ["p7"]

    deleted = api.delete("v1", "pods", "a", "p7")
    assert deleted["metadata"]["name"] == "p7"
    assert api.get("v1", "pods", "a", "p7") is None
    assert "p7" not in names(api.list("v1", "pods", "a"))

    created = api.create("v1", "pods", "a", pod("p7", n="again"))
    assert created["metadata"]["labels"] == {"n": "again"}
    assert names(api.list("v1", "pods", "a", "n=again")) == ["p7"]


def test_objects_removed_behind_the_api_leave_the_lists(api: ApiServer) -> None:
    """Tests may edit kmock's store directly; a hard delete reorders it, and the index starts over."""
    api.create("v1", "pods", "a", pod("gone"))
    api.create("v1", "pods", "a", pod("kept"))
    assert names(api.list("v1", "pods", "a")) == ["gone", "kept"]

    resource = next(key[0] for key in api.emulator.objects if key[2] == "gone")
    del api.emulator.objects[resource, "a", "gone"]
    api.create("v1", "pods", "a", pod("new"))

    assert names(api.list("v1", "pods", "a")) == ["kept", "new"]
    assert api.get("v1", "pods", "a", "gone") is None
