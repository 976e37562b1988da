"""Ids come from the OS in bulk, yet every call is a fresh draw, in threads and forks alike."""

from __future__ import annotations

import os
import re
import threading

from gateway import ids


def test_every_call_is_a_new_draw_of_48_hex_digits() -> None:
    drawn = [ids.random_hex() for _ in range(1000)]  # many bulk draws
    assert all(re.fullmatch(r"[0-9a-f]{48}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_threads_never_share_a_draw() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        into.extend(ids.random_hex() for _ in range(500))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for into in drawn for value in into]
    assert len(set(everything)) == len(everything) == 4000


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    ids.random_hex()  # the pool now holds draws the parent has not handed out
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its first id and leave at once
        os.write(writer, ids.random_hex().encode())
        os._exit(0)
    os.close(writer)
    childs = os.read(reader, 100).decode()
    os.close(reader)
    os.waitpid(child, 0)
    parents = [ids.random_hex() for _ in range(64)]
    assert len(childs) == 48
    assert childs not in parents
