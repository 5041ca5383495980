"""(v2) The sequencer's receipts prove: each carries the inclusion proof of the receipted reading and
the consistency proof from the previous receipt sent to the device, all built in one batch per
checkpoint from stored nodes, on real PostgreSQL."""

from __future__ import annotations

from attest_core.checkpoint import open_checkpoint
from attest_core.entries import reading_entry_bytes
from attest_core.merkle import leaf_hash, root_from_leaf_hashes
from attest_core.receipt import ProvenTree, Receipt, check_extension, check_inclusion, open_receipt
from gateway import logstore
from gateway.receipts_due import receipt_proofs
from tests.gateway.helpers import enrol_device, log_signer
from tests.gateway.test_log import World, msg, world_test
from tests.support import T0, TestDevice


def receipts(w: World) -> dict[str, Receipt]:
    out = {}
    for _, payload in w.published:
        r = open_receipt(payload, log_signer().public_key)
        out[r.device_id] = r
    w.published.clear()
    return out


@world_test
async def test_receipts_carry_proofs_that_a_device_can_check(w: World) -> None:
    devices = [TestDevice(f"dev-{i}", f"asset-{i}") for i in range(4)]
    for d in devices:
        await enrol_device(w.conn, d)
    envelopes: dict[str, list[bytes]] = {d.device_id: [] for d in devices}

    async def readings(n: int, of: list[TestDevice]) -> None:
        for d in of:
            for _ in range(n):
                envelope = d.reading(T0 + 60_000 * (len(envelopes[d.device_id]) + 1), 1).encode()
                envelopes[d.device_id].append(envelope)
                await w.ingest(msg(d, envelope))
        await w.sequence()

    await readings(3, devices)
    note = await w.sequencer.checkpoint(w.conn)
    cp = open_checkpoint(note, log_signer().verifier_key()).checkpoint
    first = receipts(w)
    assert sorted(first) == [d.device_id for d in devices]
    proven: dict[str, ProvenTree] = {}
    for device_id, r in first.items():
        assert r.version == 2
        assert (r.seq, r.tree_size, r.root_hash) == (3, cp.size, cp.root_hash)
        assert r.from_size == 0
        assert r.consistency == ()
        check_inclusion(r, reading_entry_bytes(envelopes[device_id][2]))
        proven[device_id] = ProvenTree(r.tree_size, r.root_hash)

    # the second checkpoint: two devices logged more; their receipts extend the first ones
    await readings(2, devices[:2])
    await w.sequencer.checkpoint(w.conn)
    second = receipts(w)
    assert sorted(second) == ["dev-0", "dev-1"]
    for device_id, r in second.items():
        assert (r.seq, r.from_size) == (5, first[device_id].tree_size)
        check_inclusion(r, reading_entry_bytes(envelopes[device_id][4]))
        check_extension(r, proven[device_id], list(r.consistency))
        proven[device_id] = ProvenTree(r.tree_size, r.root_hash)

    # a device that re-sends a logged reading is answered against the newest checkpoint: same tree
    await w.ingest(msg(devices[3], envelopes["dev-3"][2]))
    assert await w.sequencer.answer_due(w.conn) == 1
    again = receipts(w)["dev-3"]
    assert (again.seq, again.from_size, again.tree_size) == (
        3,
        first["dev-3"].tree_size,
        second["dev-0"].tree_size,
    )
    check_inclusion(again, reading_entry_bytes(envelopes["dev-3"][2]))
    check_extension(again, proven["dev-3"], list(again.consistency))

    # a restarted sequencer does not know what it sent: from_size 0, the device fetches the proof
    await w.sequencer.load(w.conn)
    await readings(1, devices[:1])
    await w.sequencer.checkpoint(w.conn)
    after = receipts(w)["dev-0"]
    assert (after.seq, after.from_size, after.consistency) == (6, 0, ())
    check_inclusion(after, reading_entry_bytes(envelopes["dev-0"][5]))
    fetched = await logstore.consistency_proof(w.conn, proven["dev-0"].size, after.tree_size)
    check_extension(after, proven["dev-0"], fetched)


@world_test
async def test_the_proofs_of_a_checkpoint_are_built_in_one_batch(w: World) -> None:
    devices = [TestDevice(f"dev-{i}", f"asset-{i}") for i in range(5)]
    for d in devices:
        await enrol_device(w.conn, d)
        for seq in range(1, 8):
            await w.ingest(msg(d, d.reading(T0 + 60_000 * seq, 1).encode()))
    await w.sequence()
    size = await logstore.log_size(w.conn)
    leaves = [leaf_hash(e) for e in (await logstore.entries(w.conn, range(size))).values()]
    indices = list(range(0, size, 3))
    inclusion, consistency = await receipt_proofs(w.conn, size, indices, [0, 5, 17, size])
    for index in indices:
        assert inclusion[index] == await logstore.inclusion_proof(w.conn, index, size)
    assert consistency[0] == consistency[size] == []
    for m in (5, 17):
        assert consistency[m] == await logstore.consistency_proof(w.conn, m, size)
    assert root_from_leaf_hashes(leaves) == await logstore.root_at(w.conn, size)
