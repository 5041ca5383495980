#pragma version 0.4.3
#pragma evm-version paris
"""
@title LogAnchor
@notice Anchors the checkpoints of append-only Merkle logs (RFC 6962 / RFC 9162, SHA-256).
        Per operator account (msg.sender) and log origin it holds the log's verifier key and
        the anchored checkpoints. Each anchor after the first must carry a consistency proof
        from the latest anchored tree, verified here: the chain refuses a rollback or a
        second history at any size.
@dev    Compiled with the vyper package, EVM version paris (no PUSH0), so that it deploys on
        chains that lack Shanghai's opcodes. `python -m attest_chain.build` recompiles it.
"""

# A log's origin line is at most 255 bytes here, a C2SP verifier key at most 512.
MAX_ORIGIN: constant(uint256) = 255
MAX_KEY: constant(uint256) = 512
# RFC 9162 tree sizes are uint64.
MAX_TREE_SIZE: constant(uint256) = 2**64 - 1
# The longest consistency proof between two trees of at most 2**64 - 1 leaves: 64 siblings
# plus the seed subtree (a single leaf at depth 64). The ABI type is bytes32[] regardless.
MAX_PROOF: constant(uint256) = 65


event LogKeySet:
    operator: indexed(address)
    origin_hash: indexed(bytes32)
    origin: String[MAX_ORIGIN]
    key: String[MAX_KEY]
    previous: String[MAX_KEY]


event Anchored:
    operator: indexed(address)
    origin_hash: indexed(bytes32)
    number: uint256
    tree_size: uint256
    root_hash: bytes32
    note_hash: bytes32
    previous_size: uint256


struct Checkpoint:
    tree_size: uint256
    root_hash: bytes32
    note_hash: bytes32
    block_number: uint256


# Everything is keyed by (operator, keccak256(origin)): an account can only ever write under
# its own address, so no one can squat another operator's origin.
log_keys: HashMap[address, HashMap[bytes32, String[MAX_KEY]]]
anchor_counts: HashMap[address, HashMap[bytes32, uint256]]
anchors: HashMap[address, HashMap[bytes32, HashMap[uint256, Checkpoint]]]


@external
def setLogKey(origin: String[MAX_ORIGIN], key: String[MAX_KEY]):
    """
    @notice Set or change the verifier key of the caller's log `origin`. Every call is an
            event carrying the previous key, so a change of key is never silent.
    """
    assert len(origin) > 0, "empty origin"
    assert len(key) > 0, "empty key"
    origin_hash: bytes32 = keccak256(origin)
    previous: String[MAX_KEY] = self.log_keys[msg.sender][origin_hash]
    self.log_keys[msg.sender][origin_hash] = key
    log LogKeySet(
        operator=msg.sender, origin_hash=origin_hash, origin=origin, key=key, previous=previous
    )


@external
def anchor(
    origin: String[MAX_ORIGIN],
    tree_size: uint256,
    root_hash: bytes32,
    note_hash: bytes32,
    proof: DynArray[bytes32, MAX_PROOF],
):
    """
    @notice Anchor the checkpoint (tree_size, root_hash) of the caller's log `origin`, with
            the hash of its signed note. After the first anchor, `proof` is the RFC 9162
            consistency proof from the latest anchored tree to this one.
    """
    origin_hash: bytes32 = keccak256(origin)
    assert len(self.log_keys[msg.sender][origin_hash]) > 0, "no log key set"
    assert tree_size > 0, "empty tree"
    assert tree_size <= MAX_TREE_SIZE, "tree size above 2**64 - 1"
    number: uint256 = self.anchor_counts[msg.sender][origin_hash]
    previous_size: uint256 = 0
    if number == 0:
        assert len(proof) == 0, "first anchor takes no proof"
    else:
        latest: Checkpoint = self.anchors[msg.sender][origin_hash][number - 1]
        previous_size = latest.tree_size
        assert tree_size > previous_size, "tree not larger than the latest anchor"
        assert self._consistent(
            previous_size, tree_size, latest.root_hash, root_hash, proof
        ), "consistency proof does not verify"
    self.anchors[msg.sender][origin_hash][number] = Checkpoint(
        tree_size=tree_size, root_hash=root_hash, note_hash=note_hash, block_number=block.number
    )
    self.anchor_counts[msg.sender][origin_hash] = number + 1
    log Anchored(
        operator=msg.sender,
        origin_hash=origin_hash,
        number=number,
        tree_size=tree_size,
        root_hash=root_hash,
        note_hash=note_hash,
        previous_size=previous_size,
    )


@external
@view
def logKey(operator: address, origin: String[MAX_ORIGIN]) -> String[MAX_KEY]:
    """
    @notice The verifier key `operator` set for its log `origin`; "" if none.
    """
    return self.log_keys[operator][keccak256(origin)]


@external
@view
def latest(operator: address, origin: String[MAX_ORIGIN]) -> (uint256, uint256, bytes32, bytes32):
    """
    @notice (count, tree_size, root_hash, note_hash) of the latest anchor of `operator`'s log
            `origin`; all zero while it has none.
    """
    origin_hash: bytes32 = keccak256(origin)
    count: uint256 = self.anchor_counts[operator][origin_hash]
    if count == 0:
        return (0, 0, empty(bytes32), empty(bytes32))
    latest: Checkpoint = self.anchors[operator][origin_hash][count - 1]
    return (count, latest.tree_size, latest.root_hash, latest.note_hash)


@external
@view
def anchorAt(
    operator: address, origin: String[MAX_ORIGIN], number: uint256
) -> (uint256, bytes32, bytes32, uint256):
    """
    @notice (tree_size, root_hash, note_hash, block_number) of anchor `number` (from 0) of
            `operator`'s log `origin`.
    """
    origin_hash: bytes32 = keccak256(origin)
    assert number < self.anchor_counts[operator][origin_hash], "no such anchor"
    found: Checkpoint = self.anchors[operator][origin_hash][number]
    return (found.tree_size, found.root_hash, found.note_hash, found.block_number)


@internal
@pure
def _node(left: bytes32, right: bytes32) -> bytes32:
    # RFC 6962 interior node: SHA-256(0x01 || left || right), the SHA-256 precompile
    return sha256(concat(b"\x01", left, right))


@internal
@pure
def _consistent(
    size1: uint256,
    size2: uint256,
    root1: bytes32,
    root2: bytes32,
    proof: DynArray[bytes32, MAX_PROOF],
) -> bool:
    """
    @dev RFC 9162 section 2.1.4.2, step by step, for 0 < size1 < size2 <= 2**64 - 1. The
         RFC's "prepend first_hash when first is a power of two" is done by starting from
         root1 instead of proof[0].
    """
    if len(proof) == 0:
        return False
    fn: uint256 = size1 - 1
    sn: uint256 = size2 - 1
    fr: bytes32 = root1
    sr: bytes32 = root1
    start: uint256 = 0
    if size1 & fn != 0:
        fr = proof[0]
        sr = proof[0]
        start = 1
    # step 4: shift both while the lowest bit of fn is set (at most 64 times: fn < 2**64)
    for _: uint256 in range(64):
        if fn & 1 == 0:
            break
        fn = fn >> 1
        sn = sn >> 1
    for i: uint256 in range(start, len(proof), bound=MAX_PROOF):
        c: bytes32 = proof[i]
        if sn == 0:
            return False
        if fn & 1 == 1 or fn == sn:
            fr = self._node(c, fr)
            sr = self._node(c, sr)
            for _: uint256 in range(64):
                if fn & 1 == 1 or fn == 0:
                    break
                fn = fn >> 1
                sn = sn >> 1
        else:
            sr = self._node(sr, c)
        fn = fn >> 1
        sn = sn >> 1
    return sn == 0 and fr == root1 and sr == root2
