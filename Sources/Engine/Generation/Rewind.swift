import CKernels

// Exact rewind (/undo, /retry): a mark taken before an exchange, and a rewind that puts every
// stateful part back as it was at the mark, bit for bit, however far the exchange went.
//
// The window is a ring: an exchange overwrites the rows of the tokens it pushes out, and
// those rows are not kept anywhere else exactly (the block memory stores them as int8, and
// rotated). So while a mark is held the cache copies each row it overwrites that belongs to
// a token older than the mark, once, into the mark's journal: at most one window of rows
// per mark, usually as many as the exchange's tokens. Rewinding writes them back, newest
// mark first. The block memory only grows by finished blocks, so a rewind cuts it back to
// the mark's block count; its small parts — the block being filled, the scorer, the
// ranking — are copied whole at the mark. Trimming a rotating cache by its length alone
// (as mlx-lm's does) cannot work once the ring has wrapped: the older rows are gone.

/// The rows one mark must put back: the window rows overwritten since it, as they were.
final class KVJournal {
    /// The stream's length at the mark: rows of older tokens are kept when overwritten.
    let since: Int
    private var slots: [(layer: Int, slot: Int)] = []
    private var rows: [UInt8] = []

    init(since: Int) { self.since = since }

    var bytes: Int { rows.count + slots.count * 16 }

    /// Keeps `slot` of `layer` as it is, before it is overwritten.
    func keep(layer: Int, slot: Int, of cache: KVCache) {
        slots.append((layer, slot))
        cache.forEachPiece(layer: layer, slot: slot) { rows.append(contentsOf: UnsafeRawBufferPointer(start: $0, count: $1)) }
    }

    /// Writes every kept row back.
    func restore(into cache: KVCache) {
        var offset = 0
        rows.withUnsafeBytes { kept in
            for (layer, slot) in slots {
                cache.forEachPiece(layer: layer, slot: slot) { piece, count in
                    piece.copyMemory(from: kept.baseAddress! + offset, byteCount: count)
                    offset += count
                }
            }
        }
    }
}

extension KVCache {
    /// The cache (and its block memory) at one point of the stream.
    public final class Mark {
        let tokensSeen: Int
        let journal: KVJournal
        let memory: BlockMemory.Mark?

        init(tokensSeen: Int, journal: KVJournal, memory: BlockMemory.Mark?) {
            (self.tokensSeen, self.journal, self.memory) = (tokensSeen, journal, memory)
        }

        /// Bytes held for it; the journal grows as the stream goes on.
        public var bytes: Int { journal.bytes + (memory?.bytes ?? 0) }
    }

    /// Marks the state as it is now: `rewind(to:)` comes back to it until it is forgotten.
    public func mark() -> Mark {
        let mark = Mark(tokensSeen: tokensSeen, journal: KVJournal(since: tokensSeen), memory: memory?.mark())
        journals.append(mark.journal)
        return mark
    }

    /// Whether `mark` can still be rewound to (a reset, a rewind to an older mark, or
    /// `forget` drops marks).
    public func canRewind(to mark: Mark) -> Bool { journals.contains { $0 === mark.journal } }

    /// Puts the cache and its memory back as they were at `mark`, which is then used up,
    /// with every mark taken after it.
    public func rewind(to mark: Mark) {
        guard let i = journals.lastIndex(where: { $0 === mark.journal }) else { preconditionFailure("rewind to a mark no longer held") }
        for journal in journals[i...].reversed() { journal.restore(into: self) }
        journals.removeSubrange(i...)
        restore(tokensSeen: mark.tokensSeen)
        if let memory, let saved = mark.memory { memory.rewind(to: saved, tokensSeen: mark.tokensSeen) }
    }

    /// Drops `mark` and every older one: their rows are no longer kept.
    public func forget(_ mark: Mark) {
        if let i = journals.firstIndex(where: { $0 === mark.journal }) { journals.removeSubrange(...i) }
    }

    /// The bytes of one slot of one layer, in a fixed order: per KV head the key row, the
    /// value row and (int8) their scales.
    func forEachPiece(layer l: Int, slot: Int, _ body: (UnsafeMutableRawPointer, Int) -> Void) {
        let hd = headDim, groups = hd / Int(CK_KV_GROUP), codeBytes = precision == .f32 ? hd * 4 : hd
        for h in 0..<kvHeadCount {
            let row = h * capacity + slot
            body(keys[l] + row * codeBytes, codeBytes)
            body(values[l] + row * codeBytes, codeBytes)
            if precision == .int8 {
                body(UnsafeMutableRawPointer(keyScales[l] + row * groups), groups * 4)
                body(UnsafeMutableRawPointer(valueScales[l] + row * groups), groups * 4)
            }
        }
    }
}

extension BlockMemory {
    /// The memory's parts that change in place, copied at a mark; finished blocks are only
    /// appended, so their count is enough.
    final class Mark {
        let blocks: Int
        let pendingCount: [Int]
        let pending: [[Float]]        // per layer: the keys, then the values, of the rows being filled
        let pendingPositions: [[Int64]]
        let scores: [[Float]]         // per layer: the scorer's [kv_head][blockSize]
        let ring: [[Float]]           // per layer: the scorer's query sums
        let ranking: RankingState

        init(_ m: BlockMemory) {
            let b = m.settings.blockSize, hd = m.headDim, heads = m.kvHeadCount
            blocks = m.blocks
            pendingCount = m.pendingCount
            var pending: [[Float]] = []
            for l in 0..<m.layerCount {
                var rows: [Float] = []
                for part in [m.pendingKeys[l], m.pendingValues[l]] {
                    for h in 0..<heads { rows += UnsafeBufferPointer(start: part + h * b * hd, count: m.pendingCount[l] * hd) }
                }
                pending.append(rows)
            }
            self.pending = pending
            pendingPositions = (0..<m.layerCount).map { Array(UnsafeBufferPointer(start: m.pendingPositions[$0], count: m.pendingCount[$0])) }
            scores = m.scorer.scores.map { Array(UnsafeBufferPointer(start: $0, count: heads * b)) }
            ring = m.scorer.ring.map { Array(UnsafeBufferPointer(start: $0, count: m.scorer.ringSize * heads * hd)) }
            ranking = RankingState(m)
        }

        var bytes: Int { 4 * (pending.reduce(0) { $0 + $1.count } + scores.reduce(0) { $0 + $1.count } + ring.reduce(0) { $0 + $1.count }) }
    }

    func mark() -> Mark { Mark(self) }

    /// Back to `mark`, for a stream of `n` tokens: later blocks dropped, the rest copied back,
    /// the recalled blocks reloaded as the mark's ranking had them.
    func rewind(to mark: Mark, tokensSeen n: Int) {
        let b = settings.blockSize, hd = headDim, heads = kvHeadCount
        store.truncate(to: mark.blocks * layerCount)
        blockStarts.removeSubrange(mark.blocks...)
        for l in 0..<layerCount {
            blockCount[l] = mark.blocks
            representatives[l].removeSubrange((mark.blocks * heads * hd)...)
            let count = mark.pendingCount[l]
            pendingCount[l] = count
            mark.pending[l].withUnsafeBufferPointer { rows in
                for (part, target) in [pendingKeys[l], pendingValues[l]].enumerated() {
                    for h in 0..<heads {
                        (target + h * b * hd).update(from: rows.baseAddress! + (part * heads + h) * count * hd, count: count * hd)
                    }
                }
            }
            pendingPositions[l].update(from: mark.pendingPositions[l], count: count)
            scorer.scores[l].update(from: mark.scores[l], count: mark.scores[l].count)
            scorer.ring[l].update(from: mark.ring[l], count: mark.ring[l].count)
        }
        scorer.restore(tokensSeen: n)
        do {
            try mark.ranking.apply(to: self)
        } catch {
            preconditionFailure("a ranking taken from this memory no longer fits it: \(error)")
        }
    }
}
