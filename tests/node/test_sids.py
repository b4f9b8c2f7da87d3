"""Fresh session ids (cableway.node.sids): what ``?sid=`` session restore trusts, so
they must be unique and unpredictable whatever the pool does to save system calls."""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading

import pytest

from cableway.node import sids
from cableway.node.sids import SID_LENGTH, SidPool, fresh_sid

_SID = re.compile(r"[A-Za-z0-9_-]{21}")


def test_sids_have_token_urlsafe_s_length_and_alphabet_and_are_unique() -> None:
    pool = SidPool(sids_per_block=8)
    taken = [pool.take() for _ in range(8 * 50)]  # 50 blocks
    assert SID_LENGTH == 21 == len(secrets.token_urlsafe(16)[:21])
    assert all(_SID.fullmatch(sid) for sid in taken)
    assert len(set(taken)) == len(taken)
    # the whole alphabet turns up in 8 400 random characters (a narrowed one would
    # not; missing one of 64 by chance: (63/64)**8400, about 1e-57)
    assert set("".join(taken)) == set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_sids_come_from_the_csprng_and_a_block_is_drawn_when_used_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[bytes] = []

    def token_bytes(n: int) -> bytes:
        block = os.urandom(n)
        drawn.append(block)
        return block

    monkeypatch.setattr(sids.secrets, "token_bytes", token_bytes)
    pool = SidPool(sids_per_block=4)
    taken = [pool.take() for _ in range(10)]
    assert len(drawn) == 3  # 4 + 4 + 2 of the third block
    assert all(len(block) == 4 * SID_LENGTH * 3 // 4 for block in drawn)
    # each id is 21 characters of the base64 of the block it was cut from, none reused
    texts = [base64.urlsafe_b64encode(block).decode() for block in drawn]
    cut = {t[i : i + SID_LENGTH] for t in texts for i in range(0, len(t), SID_LENGTH)}
    assert set(taken) <= cut
    assert len(set(taken)) == 10


def test_odd_block_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        SidPool(sids_per_block=6)


def test_threads_never_get_the_same_sid() -> None:
    pool = SidPool(sids_per_block=4)  # refilled often: races at the refill too
    results: list[list[str]] = [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        for _ in range(2000):
            out.append(pool.take())

    threads = [threading.Thread(target=take, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [sid for out in results for sid in out]
    assert len(taken) == len(set(taken)) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_never_hands_out_its_parent_s_next_sids() -> None:
    fresh_sid()  # the process's pool holds a block now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out at once
        try:
            os.write(write, fresh_sid().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = [fresh_sid() for _ in range(sids.SIDS_PER_BLOCK)]
    assert _SID.fullmatch(child)
    assert child not in parent
