"""MSE/PE handshake state machine: vectors from the spec's formulas, both roles in
every chunking, and hostile input (bad VC, wrong secret, oversized padding,
garbage, truncation) always ending in EncryptionError, never a hang or a crash."""

from __future__ import annotations

import hashlib
from itertools import cycle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core import mse
from swarm.errors import EncryptionError

# The prime from the specification, written out here independently of the module.
SPEC_P = int(
    "0xFFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3621"
    "0000000000090563",
    16,
)
XA = 0x1234567890ABCDEF1234567890ABCDEF12345678  # 160-bit private keys
XB = 0xFEDCBA0987654321FEDCBA0987654321FEDCBA09
INFO_HASH = hashlib.sha1(b"some torrent").digest()
OTHER_HASHES = [hashlib.sha1(bytes([i])).digest() for i in range(3)]


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def ref_rc4(key: bytes, data: bytes, skip: int = 1024) -> bytes:
    """Textbook RC4 (test-only, slow on purpose: an oracle independent of OpenSSL)."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for n in range(skip + len(data)):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        k = s[(s[i] + s[j]) & 0xFF]
        if n >= skip:
            out.append(data[n - skip] ^ k)
    return bytes(out)


def lookup_for(*hashes: bytes):  # type: ignore[no-untyped-def]
    return {sha1(b"req2", ih): ih for ih in hashes}.get


def receiver(**kw) -> mse.Receiver:  # type: ignore[no-untyped-def]
    return mse.Receiver(lookup_for(INFO_HASH, *OTHER_HASHES), XB, **kw)


def secret() -> bytes:
    return pow(pow(2, XA, SPEC_P), XB, SPEC_P).to_bytes(96, "big")


def craft_step3(
    vc: bytes = bytes(8), provide: int = 3, pad_c_len: int = 0, ia: bytes = b""
) -> bytes:
    """A's step 3 built from the spec's formulas, with fields a real initiator would refuse."""
    s = secret()
    key_a = sha1(b"keyA", s, INFO_HASH)
    plain = vc + provide.to_bytes(4, "big") + pad_c_len.to_bytes(2, "big") + bytes(pad_c_len)
    plain += len(ia).to_bytes(2, "big") + ia
    masked = bytes(x ^ y for x, y in zip(sha1(b"req2", INFO_HASH), sha1(b"req3", s), strict=True))
    return sha1(b"req1", s) + masked + ref_rc4(key_a, plain)


def craft_step4(select: int, pad_d_len: int = 0) -> bytes:
    key_b = sha1(b"keyB", secret(), INFO_HASH)
    plain = bytes(8) + select.to_bytes(4, "big") + pad_d_len.to_bytes(2, "big") + bytes(pad_d_len)
    return ref_rc4(key_b, plain)


def initiator_after_yb(**kw) -> mse.Initiator:  # type: ignore[no-untyped-def]
    a = mse.Initiator(INFO_HASH, XA, **kw)
    a.start()
    a.feed(pow(2, XB, SPEC_P).to_bytes(96, "big"))
    return a


# --------------------------------------------------------------------------
# Known values


def test_reference_rc4_matches_published_vectors() -> None:
    assert ref_rc4(b"Key", b"Plaintext", 0).hex() == "bbf316e8d940af0ad3"
    assert ref_rc4(b"Secret", b"Attack at dawn", 0).hex() == "45a01f645fc35b383552544b9bf5"


def test_prime_and_library_rc4_match_the_spec() -> None:
    assert mse.P == SPEC_P and mse.G == 2 and SPEC_P.bit_length() == 768
    rc4 = mse.Rc4(b"k" * 20)
    assert rc4.update(b"hello world") == ref_rc4(b"k" * 20, b"hello world")


def test_handshake_bytes_match_the_spec_formulas() -> None:
    pad_a, pad_b, pad_c, pad_d = b"\xaa" * 7, b"\xbb" * 300, b"\xcc" * 5, b"\xdd" * 9
    ia = b"\x13BitTorrent protocol" + bytes(48)
    a = mse.Initiator(INFO_HASH, XA, padding=pad_a, initial_payload=ia, crypto_padding=pad_c)
    b = receiver(padding=pad_b, crypto_padding=pad_d)
    ya = pow(2, XA, SPEC_P).to_bytes(96, "big")
    yb = pow(2, XB, SPEC_P).to_bytes(96, "big")
    s = secret()
    assert pow(int.from_bytes(yb, "big"), XA, SPEC_P).to_bytes(96, "big") == s

    step1 = a.start()
    assert step1 == ya + pad_a
    step2 = b.feed(step1).send
    assert step2 == yb + pad_b
    step3 = a.feed(step2).send
    key_a, key_b = sha1(b"keyA", s, INFO_HASH), sha1(b"keyB", s, INFO_HASH)
    assert step3[:20] == sha1(b"req1", s)
    assert step3[20:40] == bytes(
        x ^ y for x, y in zip(sha1(b"req2", INFO_HASH), sha1(b"req3", s), strict=True)
    )
    crypto_provide = (mse.CRYPTO_PLAIN | mse.CRYPTO_RC4).to_bytes(4, "big")
    plain3 = bytes(8) + crypto_provide + b"\x00\x05" + pad_c + len(ia).to_bytes(2, "big") + ia
    assert step3[40:] == ref_rc4(key_a, plain3)
    assert not a.done

    send, payload = b.feed(step3)
    assert b.done and b.info_hash == INFO_HASH and b.provided == 3
    assert payload == ia
    assert send == ref_rc4(key_b, bytes(8) + b"\x00\x00\x00\x02" + b"\x00\x09" + pad_d)
    assert a.feed(send) == (b"", b"")
    assert a.done and a.stream.encrypted and b.stream.encrypted

    # Payload continues both keystreams where the handshake left them.
    sent = a.stream.encrypt(b"hello B")
    assert sent == ref_rc4(key_a, plain3 + b"hello B")[len(plain3) :]
    assert b.stream.decrypt(sent) == b"hello B"
    back = b.stream.encrypt(b"hello A")
    assert back == ref_rc4(key_b, bytes(14) + pad_d + b"hello A")[14 + len(pad_d) :]
    assert a.stream.decrypt(back) == b"hello A"


def test_crypto_select_plaintext_obfuscates_only_the_handshake() -> None:
    ia = b"\x13BitTorrent protocol" + bytes(48)
    a = mse.Initiator(INFO_HASH, XA, provide=mse.CRYPTO_PLAIN, initial_payload=ia)
    b = receiver(allowed=mse.CRYPTO_PLAIN | mse.CRYPTO_RC4)
    step3 = a.feed(b.feed(a.start()).send).send
    assert ia not in step3  # IA travels under RC4 whatever is selected
    step4, got_ia = b.feed(step3[:60])  # 56 bytes of handshake, 4 of IA
    assert b.done and not b.stream.encrypted
    rest_of_ia = b.stream.decrypt(step3[60:])
    assert got_ia + rest_of_ia == ia
    assert b.stream.decrypt(b"plain bytes") == b"plain bytes"
    a.feed(step4)
    assert a.done and not a.stream.encrypted
    assert a.stream.encrypt(b"xyz") == b"xyz" and b.stream.encrypt(b"abc") == b"abc"


def test_receiver_prefers_rc4_and_finds_the_torrent_among_several() -> None:
    for ih in OTHER_HASHES:
        a = mse.Initiator(ih, XA)
        b = receiver()
        a.feed(b.feed(a.feed(b.feed(a.start()).send).send).send)
        assert b.info_hash == ih and a.done and b.stream.method == mse.CRYPTO_RC4


@pytest.mark.parametrize(
    ("provide", "selected"),
    [(mse.CRYPTO_ALL, mse.CRYPTO_PLAIN), (mse.CRYPTO_RC4, mse.CRYPTO_RC4), (mse.CRYPTO_PLAIN, mse.CRYPTO_PLAIN)],
)
def test_receiver_preferring_plaintext_selects_rc4_only_when_the_initiator_insists(
    provide: int, selected: int
) -> None:
    """libtorrent's default (prefer_rc4=false), our --encryption prefer as the receiver."""
    a = mse.Initiator(INFO_HASH, XA, provide=provide)
    b = receiver(prefer_plaintext=True)
    a.feed(b.feed(a.feed(b.feed(a.start()).send).send).send)
    assert a.done and b.stream.method == selected == a.stream.method


def test_is_plain_handshake() -> None:
    assert mse.is_plain_handshake(b"\x13BitTorrent protocol\x00\x00") is True
    assert mse.is_plain_handshake(b"\x13BitTorrent protocol") is True
    assert mse.is_plain_handshake(b"\x13BitTor") is None
    assert mse.is_plain_handshake(b"") is None
    assert mse.is_plain_handshake(b"\x13BitTorrent protocoX") is False
    assert mse.is_plain_handshake(mse.public_key(XA)) is False


# --------------------------------------------------------------------------
# Both roles, every chunking


def deliver(data: bytes, sizes: cycle[int]) -> list[bytes]:
    out = []
    while data:
        n = next(sizes)
        out.append(data[:n])
        data = data[n:]
    return out


@given(
    xa=st.integers(2, 2**160 - 1),
    xb=st.integers(2, 2**160 - 1),
    pads=st.tuples(*[st.integers(0, mse.MAX_PAD)] * 4),
    provide=st.sampled_from([1, 2, 3]),
    allowed=st.sampled_from([1, 2, 3]),
    ia=st.binary(max_size=200),
    a_payload=st.binary(max_size=3000),
    b_payload=st.binary(max_size=3000),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8),
    in_place=st.booleans(),
)
def test_roles_agree_in_any_chunking(
    xa: int,
    xb: int,
    pads: tuple[int, int, int, int],
    provide: int,
    allowed: int,
    ia: bytes,
    a_payload: bytes,
    b_payload: bytes,
    sizes: list[int],
    in_place: bool,
) -> None:
    if not provide & allowed:
        provide |= allowed
    ih = OTHER_HASHES[xa % 3]
    a = mse.Initiator(
        ih,
        xa,
        padding=b"A" * pads[0],
        provide=provide,
        initial_payload=ia,
        crypto_padding=b"C" * pads[2],
    )
    b = mse.Receiver(
        lookup_for(INFO_HASH, *OTHER_HASHES),
        xb,
        padding=b"B" * pads[1],
        allowed=allowed,
        crypto_padding=b"D" * pads[3],
    )
    chunk_sizes = cycle(sizes)
    to_b, to_a = [a.start()], []
    got_b, got_a = bytearray(), bytearray()
    a_sent_payload = False

    def receive(side: mse.Initiator | mse.Receiver, chunk: bytes, got: bytearray) -> bytes:
        if not side.done:
            send, payload = side.feed(chunk)
            got += payload
            return send
        if in_place:
            buf = bytearray(chunk)
            side.stream.decrypt_into(memoryview(buf))
            got += buf
        else:
            got += side.stream.decrypt(chunk)
        return b""

    for _ in range(10_000):
        if not to_b and not to_a:
            break
        for chunk in deliver(b"".join(to_b), chunk_sizes):
            was_done = b.done
            out = receive(b, chunk, got_b)
            if out:
                to_a.append(out)
            if b.done and not was_done:
                to_a.append(b.stream.encrypt(b_payload))
        to_b = []
        for chunk in deliver(b"".join(to_a), chunk_sizes):
            out = receive(a, chunk, got_a)
            if out:
                to_b.append(out)
        to_a = []
        if a.done and not a_sent_payload:
            a_sent_payload = True
            to_b.append(a.stream.encrypt(a_payload))
    assert a.done and b.done and b.info_hash == ih
    expected = mse.CRYPTO_RC4 if provide & allowed & mse.CRYPTO_RC4 else mse.CRYPTO_PLAIN
    assert a.stream.method == b.stream.method == expected
    assert bytes(got_b) == ia + a_payload
    assert bytes(got_a) == b_payload


# --------------------------------------------------------------------------
# Bounded padding


def test_receiver_accepts_pad_a_of_512_but_not_513() -> None:
    ya = pow(2, XA, SPEC_P).to_bytes(96, "big")
    b = receiver()
    b.feed(ya + bytes(512) + craft_step3())
    assert b.done
    b = receiver()
    with pytest.raises(EncryptionError, match="req1"):
        b.feed(ya + bytes(513) + craft_step3())


def test_receiver_gives_up_on_garbage_after_532_bytes_not_before() -> None:
    b = receiver()
    b.feed(pow(2, XA, SPEC_P).to_bytes(96, "big") + b"\x01" * 531)
    assert not b.done
    with pytest.raises(EncryptionError):
        b.feed(b"\x01")


def test_initiator_rejects_pad_b_over_512() -> None:
    a = initiator_after_yb()
    a.feed(bytes(512) + craft_step4(mse.CRYPTO_RC4))
    assert a.done
    a = initiator_after_yb()
    with pytest.raises(EncryptionError, match="VC"):
        a.feed(bytes(513) + craft_step4(mse.CRYPTO_RC4))


def test_oversized_pad_c_and_pad_d_fields() -> None:
    b = receiver()
    b.feed(pow(2, XA, SPEC_P).to_bytes(96, "big"))
    with pytest.raises(EncryptionError, match="PadC"):
        b.feed(craft_step3(pad_c_len=513))
    a = initiator_after_yb()
    with pytest.raises(EncryptionError, match="PadD"):
        a.feed(craft_step4(mse.CRYPTO_RC4, pad_d_len=513))


def test_our_own_padding_is_bounded() -> None:
    with pytest.raises(ValueError):
        mse.Initiator(INFO_HASH, XA, padding=bytes(513))
    with pytest.raises(ValueError):
        mse.Receiver(lookup_for(INFO_HASH), XB, crypto_padding=bytes(513))


# --------------------------------------------------------------------------
# Hostile input


def test_bad_vc() -> None:
    b = receiver()
    b.feed(pow(2, XA, SPEC_P).to_bytes(96, "big"))
    with pytest.raises(EncryptionError, match="verification constant"):
        b.feed(craft_step3(vc=b"\x00" * 7 + b"\x01"))


def test_wrong_secret_is_an_unknown_torrent() -> None:
    a = mse.Initiator(hashlib.sha1(b"not ours").digest(), XA)
    b = receiver()
    step3 = a.feed(b.feed(a.start()).send).send
    with pytest.raises(EncryptionError, match="do not have"):
        b.feed(step3)
    with pytest.raises(EncryptionError):  # a failed handshake stays failed
        b.feed(b"more")


def test_no_common_crypto_method() -> None:
    a = mse.Initiator(INFO_HASH, XA, provide=mse.CRYPTO_PLAIN)
    b = receiver(allowed=mse.CRYPTO_RC4)
    with pytest.raises(EncryptionError, match="no common crypto"):
        b.feed(a.feed(b.feed(a.start()).send).send)


@pytest.mark.parametrize("select", [0, 3, 4, mse.CRYPTO_RC4])
def test_initiator_rejects_a_select_it_did_not_offer(select: int) -> None:
    a = initiator_after_yb(provide=mse.CRYPTO_PLAIN)
    with pytest.raises(EncryptionError, match="selected"):
        a.feed(craft_step4(select))


@pytest.mark.parametrize("y", [0, 1, SPEC_P - 1, SPEC_P, 2**768 - 1])
def test_degenerate_public_keys(y: int) -> None:
    with pytest.raises(EncryptionError, match="degenerate"):
        receiver().feed(y.to_bytes(96, "big"))
    a = mse.Initiator(INFO_HASH, XA)
    a.start()
    with pytest.raises(EncryptionError, match="degenerate"):
        a.feed(y.to_bytes(96, "big"))


def test_truncated_input_at_every_point_is_an_error_at_eof() -> None:
    a = mse.Initiator(INFO_HASH, XA, padding=b"p" * 10, initial_payload=b"ia")
    b = receiver(padding=b"q" * 10)
    to_b = a.start()
    to_a = b.feed(to_b).send
    step3 = a.feed(to_a).send
    to_b += step3
    step4 = receiver(padding=b"q" * 10).feed(to_b).send
    for cut in range(len(to_b) - len(b"ia")):  # done once len(IA) is read
        r = receiver(padding=b"q" * 10)
        r.feed(to_b[:cut])
        with pytest.raises(EncryptionError, match="closed"):
            r.eof()
    for cut in range(len(to_a + step4)):
        i = mse.Initiator(INFO_HASH, XA, padding=b"p" * 10, initial_payload=b"ia")
        i.start()
        i.feed((to_a + step4)[:cut])
        with pytest.raises(EncryptionError, match="closed"):
            i.eof()
    done = receiver(padding=b"q" * 10)
    done.feed(to_b)
    done.eof()  # after the handshake a close is the shell's business, not ours


@given(
    garbage=st.binary(min_size=96 + 532, max_size=4000),
    sizes=st.lists(st.integers(1, 900), min_size=1),
)
def test_garbage_always_ends_in_our_error(garbage: bytes, sizes: list[int]) -> None:
    for side in ("receiver", "initiator"):
        hs: mse.Initiator | mse.Receiver
        if side == "receiver":
            hs = receiver()
        else:
            hs = mse.Initiator(INFO_HASH, XA)
            hs.start()
        with pytest.raises(EncryptionError):
            for chunk in deliver(garbage, cycle(sizes)):
                hs.feed(chunk)
