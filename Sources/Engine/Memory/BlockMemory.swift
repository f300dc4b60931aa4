import CKernels

/// What distance recalled tokens are at from the query (`--memory-positions`).
///
/// Measured (passkey, 4K tokens, window 1024, 10 trials; `scroll ppl` over 16K tokens of
/// the vim docs): `.same` 6/10 and ppl 11.502, `.chronological` 8/10 and ppl 11.494. With
/// `.same` the recalled needle was in the recalled set for 74–83 of 90 layer-heads yet the
/// digits came out wrong: SmolLM2 spells numbers one digit per token, and tokens all at one
/// position lose their order.
public enum MemoryPositions: String, CaseIterable {
    /// All at one distance, just beyond the window, however old (InfLLM's choice).
    case same
    /// In stream order just beyond the window: the block being filled nearest, then the
    /// recalled blocks, oldest farthest (positions "inside the cache", as StreamingLLM counts).
    case chronological
}

/// The block memory's knobs (`--block-size`, `--top-blocks`, `--memory-budget`).
public struct MemorySettings: Equatable {
    /// Evicted tokens per block: the unit that is scored and recalled.
    public var blockSize = 64
    /// Blocks recalled per layer and KV head.
    public var topBlocks = 8
    /// While decoding, the recalled set is re-ranked every this many tokens, among the
    /// candidates of the last full ranking plus blocks finished since.
    public var refreshEvery = 16
    /// Candidates kept from a full ranking for the re-rankings while decoding, as a multiple of topBlocks.
    public var candidateFactor = 4
    /// Contenders each ranking keeps: the next re-ranking while decoding looks at these (and newer blocks).
    var candidatesKept: Int { max(topBlocks, candidateFactor * topBlocks) }
    /// Keys whose mean is a block's representative: the ones the queries after them in the
    /// window scored highest (InfLLM's representative tokens; RepresentativeScorer.swift),
    /// or 0 for all of them.
    public var representativeKeys = 4
    /// Bytes of block contents kept in RAM; the rest goes to a temporary file.
    public var ramBudget = 1 << 30
    public var positions = MemoryPositions.chronological

    public init() {}
}

/// Memory-augmented attention, training-free (InfLLM: Xiao et al. 2024, "InfLLM: Training-Free
/// Long-Context Extrapolation for LLMs with an Efficient Context Memory"): tokens leaving the
/// window are grouped into blocks; each block keeps its keys and values (int8, per-32 scales)
/// and one representative key per KV head (the mean of its most attended keys, picked by
/// RepresentativeScorer). Before a chunk of queries attends, every block is scored per layer and KV head by (Σ queries)·representative — the
/// sum over the chunk of InfLLM's relevance — and the top blocks join the sinks, the
/// window and the not-yet-full block of latest evictions in the same softmax.
///
/// Positions. With `.chronological` (the default) memory keys are attended with the query at
/// its own position, like the window: the block being filled keeps the keys as the window
/// had them, at their true distance; recalled rows are rotated to sit right behind it, as
/// if they were the text evicted just before it, in stream order (so a recalled passage keeps
/// its word order and stays within this small model's reach, whatever its age). Between
/// rankings they age with the stream; each ranking moves them back behind the block being
/// filled. When every block is recalled, every key is thus at its true distance and the
/// attention equals dense attention (BlockMemoryTests). Finished blocks are stored rotated
/// to the canonical positions sinks − blockSize + i (slot i), and scored there by the query
/// rotated for the sink keys (at sinks + window − 1). With `.same` (InfLLM's choice) every
/// key is turned back to position 0 when it is evicted and attended with the sink query,
/// so all look as far away as the sinks, however old.
///
/// Two recalls work together. This one, by attention, runs for every chunk and every decoded
/// token and keeps evicted keys in reach of the queries. The other runs once per question:
/// PassageIndex finds the evicted passages that share the question's words and Conversation
/// reads them again as fresh tokens right before it — in natural text the representatives
/// rank the fact's block anywhere from 1st to 90th, and this model uses a passage only when
/// it is near the question (PassageIndex.swift says what was measured).
///
/// Cost. A full ranking (each prefill chunk) reads one representative per block; while
/// decoding, re-rankings every `refreshEvery` tokens look only at the last full ranking's
/// `candidateFactor·topBlocks` candidates and at blocks finished since, so the cost per
/// generated token does not grow with the stream.
public final class BlockMemory {
    public let settings: MemorySettings
    let layerCount: Int, kvHeadCount: Int, headDim: Int
    private let rope: RopeTable
    private let ropeMode: Int32

    // The block being filled, per layer, f32: keys as the window had them (rotated at their
    // stream position; `.same`: turned back to position 0), and values.
    let pendingKeys: [UnsafeMutablePointer<Float>]     // [kv_head][block][head_dim]
    let pendingValues: [UnsafeMutablePointer<Float>]
    let pendingPositions: [UnsafeMutablePointer<Int64>] // [block]
    var pendingCount: [Int]

    // Finished blocks.
    /// Stream position of each finished block's first token.
    public internal(set) var blockStarts: [Int] = []
    var blockCount: [Int]                    // per layer
    var representatives: [[Float]]           // per layer: [block][kv_head][head_dim]
    let store: BlockStore
    let blob: UnsafeMutableRawPointer        // one block of one layer, being packed or read back

    // What is recalled, per layer and KV head, int8 as the blocks are stored (a quarter of
    // the bytes f32 rows took: decoding reads every recalled row per token, and with f32
    // rows memory-on decoding ran at ~0.85× memory-off after 128K, the bound that traffic set).
    let recallKeys: [UnsafeMutablePointer<Int8>]        // [kv_head][topBlocks·block][head_dim]
    private let recallValues: [UnsafeMutablePointer<Int8>]
    private let recallKeyScales: [UnsafeMutablePointer<Float>]   // [kv_head][topBlocks·block][head_dim/32]
    private let recallValueScales: [UnsafeMutablePointer<Float>]
    private let turning: UnsafeMutablePointer<Float>    // [block][head_dim] one block's keys being re-rotated
    private let recallPositions: [UnsafeMutablePointer<Int64>]  // [kv_head][topBlocks·block]
    /// [layer][kv_head] the recalled blocks, oldest first, with their scores.
    public internal(set) var recalled: [[[(block: Int, score: Float)]]]
    var candidates: [[[Int]]]                // [layer][kv_head]
    // Ranking scratch, reused so that re-ranking while decoding allocates nothing: the best
    // contenders so far, and the top blocks in stream order.
    private var best: [(block: Int, score: Float)] = []
    private var chosen: [(block: Int, score: Float)] = []
    let scorer: RepresentativeScorer         // which keys stand for a block
    var rankedBlocks: [Int]                  // per layer: blocks that existed at the last ranking
    var sinceRanking: [Int]                  // per layer: tokens decoded since
    private let inverseRows: UnsafeMutablePointer<Float>   // [2][head_dim/2] cos, ±sin of a rotation, over mscale
    private let querySum: UnsafeMutablePointer<Float>      // [kv_head][head_dim]

    private let sinks: Int, window: Int

    init(layerCount: Int, kvHeadCount: Int, headDim: Int, rope: RopeTable, ropeMode: Int32, settings: MemorySettings,
         sinks: Int, window: Int) {
        self.sinks = sinks
        self.window = window
        precondition(settings.blockSize >= 1 && settings.topBlocks >= 0 && headDim % Int(CK_KV_GROUP) == 0)
        self.settings = settings
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.rope = rope
        self.ropeMode = ropeMode
        let b = settings.blockSize, rows = kvHeadCount * b
        pendingKeys = (0..<layerCount).map { _ in .allocate(capacity: rows * headDim) }
        pendingValues = (0..<layerCount).map { _ in .allocate(capacity: rows * headDim) }
        pendingPositions = (0..<layerCount).map { _ in .allocate(capacity: b) }
        pendingCount = Array(repeating: 0, count: layerCount)
        blockCount = Array(repeating: 0, count: layerCount)
        representatives = Array(repeating: [], count: layerCount)
        let blobBytes = 2 * rows * headDim + 2 * rows * (headDim / Int(CK_KV_GROUP)) * 4
        store = BlockStore(blobBytes: blobBytes, layerCount: layerCount, ramBudget: settings.ramBudget)
        blob = .allocate(byteCount: blobBytes, alignment: 64)
        let recallRows = kvHeadCount * settings.topBlocks * b
        recallKeys = (0..<layerCount).map { _ in .allocate(capacity: max(1, recallRows * headDim)) }
        recallValues = (0..<layerCount).map { _ in .allocate(capacity: max(1, recallRows * headDim)) }
        let recallGroups = max(1, recallRows * headDim / Int(CK_KV_GROUP))
        recallKeyScales = (0..<layerCount).map { _ in .allocate(capacity: recallGroups) }
        recallValueScales = (0..<layerCount).map { _ in .allocate(capacity: recallGroups) }
        turning = .allocate(capacity: b * headDim)
        recallPositions = (0..<layerCount).map { _ in .allocate(capacity: max(1, recallRows)) }
        recalled = Array(repeating: Array(repeating: [], count: kvHeadCount), count: layerCount)
        let keep = settings.candidatesKept
        candidates = Array(repeating: Array(repeating: [], count: kvHeadCount), count: layerCount)
        for l in 0..<layerCount {
            for h in 0..<kvHeadCount {
                candidates[l][h].reserveCapacity(keep + 8)
                recalled[l][h].reserveCapacity(settings.topBlocks)
            }
        }
        best.reserveCapacity(keep + 1)
        chosen.reserveCapacity(settings.topBlocks + 1)
        rankedBlocks = Array(repeating: 0, count: layerCount)
        sinceRanking = Array(repeating: 0, count: layerCount)
        inverseRows = .allocate(capacity: headDim)
        querySum = .allocate(capacity: kvHeadCount * headDim)
        scorer = RepresentativeScorer(layerCount: layerCount, kvHeadCount: kvHeadCount, headDim: headDim, blockSize: b,
                                      sinks: sinks, window: window)
    }

    deinit {
        for p in pendingKeys + pendingValues + recallKeyScales + recallValueScales { p.deallocate() }
        for p in recallKeys + recallValues { p.deallocate() }
        turning.deallocate()
        for p in pendingPositions + recallPositions { p.deallocate() }
        blob.deallocate()
        inverseRows.deallocate()
        querySum.deallocate()
    }

    /// Tokens held (finished blocks and the one being filled, in layer 0).
    public var tokens: Int { blockCount[0] * settings.blockSize + pendingCount[0] }
    public var blocks: Int { blockCount[0] }
    /// Bytes of block contents in RAM and in the file, and of representative keys.
    public var ramBytes: Int { store.ramBytes + blockCount.reduce(0, +) * kvHeadCount * headDim * 4 }
    public var fileBytes: Int { store.fileBytes }
    /// Why blocks are being dropped (the memory file could not be written), if they are.
    public var failure: String? { store.failure }
    /// Opens the memory file now, so that a temporary folder it cannot be created in is
    /// known (`failure`) before a long read rather than once the RAM budget has filled.
    public func prepareFile() { store.openFile() }

    // Blob layout of one block in one layer: key codes, value codes [kv_head][block][head_dim]
    // int8, then key scales, value scales [kv_head][block][head_dim/32] f32.
    private var codesPerHead: Int { settings.blockSize * headDim }
    private var scalesPerHead: Int { settings.blockSize * headDim / Int(CK_KV_GROUP) }
    private func keyCodes(_ base: UnsafeRawPointer, _ h: Int) -> UnsafePointer<Int8> {
        (base + h * codesPerHead).assumingMemoryBound(to: Int8.self)
    }
    private func valueCodes(_ base: UnsafeRawPointer, _ h: Int) -> UnsafePointer<Int8> {
        (base + (kvHeadCount + h) * codesPerHead).assumingMemoryBound(to: Int8.self)
    }
    private func scales(_ base: UnsafeRawPointer, _ index: Int) -> UnsafePointer<Float> {
        (base + 2 * kvHeadCount * codesPerHead).assumingMemoryBound(to: Float.self) + index * scalesPerHead
    }
    /// In the blob at `base`: the codes and the scales of keys (part 0) or values (part 1) of KV head h.
    func blobRows(_ base: UnsafeRawPointer, part: Int, head h: Int) -> (codes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        let index = part * kvHeadCount + h
        return (UnsafeMutablePointer(mutating: (base + index * codesPerHead).assumingMemoryBound(to: Int8.self)),
                UnsafeMutablePointer(mutating: scales(base, index)))
    }
    /// Every scale in `blob`.
    var blobScales: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: scales(blob, 0), count: 2 * kvHeadCount * scalesPerHead) }

    /// Notes the queries of n tokens from stream position `first`, rotated at their own
    /// positions, before they attend (they score the keys they see in the window).
    func noteQueries(layer l: Int, queries: UnsafePointer<Float>, n: Int, first: Int, headCount: Int) {
        scorer.note(layer: l, queries: queries, n: n, first: first, headCount: headCount)
    }

    /// Takes one layer of a token leaving the window, as the memory's layer l (KVCache.store
    /// calls this).
    func absorb(_ t: EvictedToken, as l: Int) {
        let i = pendingCount[l], hd = headDim, b = settings.blockSize
        pendingPositions[l][i] = Int64(t.position)
        for h in 0..<kvHeadCount {
            let key = pendingKeys[l] + (h * b + i) * hd
            key.update(from: t.keys + h * t.stride, count: hd)
            (pendingValues[l] + (h * b + i) * hd).update(from: t.values + h * t.stride, count: hd)
            scorer.score(layer: l, head: h, row: i, key: key, position: t.position)
        }
        if settings.positions == .same { rotate(pendingKeys[l] + i * hd, rows: kvHeadCount, stride: b * hd, from: t.position, to: 0) }
        pendingCount[l] += 1
        if pendingCount[l] == b { finishBlock(layer: l) }
    }

    /// The position row i of a finished block is stored and scored at (see Positions above):
    /// the sink query sits at sinks + window − 1, so row i is window + blockSize − 1 − i away.
    private func canonicalPosition(_ i: Int) -> Int {
        settings.positions == .same ? 0 : sinks - settings.blockSize + i
    }

    /// Where the recalled rows of layer l sit: right behind the block that was being filled
    /// at the last ranking, whose first token is at stream position sinks + blocks·blockSize
    /// (the window hands over every token from position `sinks` on, in order). A ranking
    /// after a block finished reloads them, so it is never more than a ranking behind.
    private func recallAnchor(layer l: Int) -> Int { sinks + rankedBlocks[l] * settings.blockSize }

    /// The position row x of `count` recalled rows is rotated at.
    private func recalledPosition(_ x: Int, count: Int, anchor: Int) -> Int {
        settings.positions == .same ? 0 : anchor - count + x
    }

    /// Turns the pending keys `keys` (laid out as `pendingKeys`) of layer l between where
    /// the window had them and their canonical positions: for finishing a block, and for
    /// version-1 session files, which stored them canonical.
    func turnPending(layer l: Int, keys: UnsafeMutablePointer<Float>, toCanonical: Bool) {
        guard settings.positions == .chronological else { return }
        let b = settings.blockSize, hd = headDim
        for i in 0..<pendingCount[l] {
            let stream = Int(pendingPositions[l][i]), canonical = canonicalPosition(i)
            rotate(keys + i * hd, rows: kvHeadCount, stride: b * hd, from: toCanonical ? stream : canonical,
                   to: toCanonical ? canonical : stream)
        }
    }

    /// Re-rotates `rows` keys (stride apart) from position `from` to position `to`: a rotation
    /// by to − from, with the table's rows divided by mscale so that it is applied only once.
    private func rotate(_ key: UnsafeMutablePointer<Float>, rows: Int, stride: Int, from: Int, to: Int) {
        guard from != to else { return }
        let hd = headDim, half = hd / 2, m = Float(rope.mscale), delta = to - from
        rope.fill(abs(delta), cos: inverseRows, sin: inverseRows + half)
        let sign: Float = delta < 0 ? -1 : 1
        for j in 0..<half { inverseRows[j] /= m; inverseRows[half + j] *= sign / m }
        for r in 0..<rows { ck_rope(key + r * stride, Int32(hd), inverseRows, inverseRows + half, ropeMode) }
    }

    private func finishBlock(layer l: Int) {
        let b = settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP)
        let index = blockCount[l]
        turnPending(layer: l, keys: pendingKeys[l], toCanonical: true)
        let codes = blob.assumingMemoryBound(to: Int8.self)
        let scaleBase = (blob + 2 * kvHeadCount * codesPerHead).assumingMemoryBound(to: Float.self)
        for h in 0..<kvHeadCount {
            for r in 0..<b {
                ck_quantize_kv_row(pendingKeys[l] + (h * b + r) * hd, codes + h * codesPerHead + r * hd,
                                   scaleBase + h * scalesPerHead + r * groups, Int32(hd))
                ck_quantize_kv_row(pendingValues[l] + (h * b + r) * hd, codes + (kvHeadCount + h) * codesPerHead + r * hd,
                                   scaleBase + (kvHeadCount + h) * scalesPerHead + r * groups, Int32(hd))
            }
            // The representative: the mean of the keys that stand for the block, in f32.
            let mean = querySum   // free between rankings
            mean.update(repeating: 0, count: hd)
            var count = 0
            scorer.forEachRepresentative(layer: l, head: h, keep: settings.representativeKeys) { row in
                ck_add(mean, pendingKeys[l] + (h * b + row) * hd, Int32(hd))
                count += 1
            }
            representatives[l] += UnsafeBufferPointer(start: mean, count: hd).map { $0 / Float(count) }
        }
        store.write(index * layerCount + l, from: blob)
        if blockStarts.count == index { blockStarts.append(Int(pendingPositions[l][0])) }
        blockCount[l] += 1
        pendingCount[l] = 0
    }

    /// Ranks the blocks for one layer against the queries about to attend (`n` rows of
    /// n_heads·head_dim, rotated as for sink keys) and loads the winners for `segments`.
    /// `full`: score every block (a prefill chunk); otherwise only re-rank when due (decoding).
    /// Blocks holding a `hidden` stream position are never recalled (`KVCache.hidden`): a
    /// conversation's earlier exchanges must stay out of view once evicted too, not only in
    /// the window.
    func rank(layer l: Int, queries: UnsafePointer<Float>, n: Int, headCount: Int, full: Bool, hidden: Range<Int>? = nil) {
        if !full {
            sinceRanking[l] += 1
            guard sinceRanking[l] >= settings.refreshEvery || blockCount[l] > rankedBlocks[l] && recalled[l][0].count < settings.topBlocks
            else { return }
        }
        sinceRanking[l] = 0
        let hd = headDim, group = headCount / kvHeadCount, qDim = headCount * hd
        querySum.update(repeating: 0, count: kvHeadCount * hd)
        for t in 0..<n {
            for head in 0..<headCount {
                ck_add(querySum + (head / group) * hd, queries + t * qDim + head * hd, Int32(hd))
            }
        }
        let blocks = blockCount[l], previouslyRanked = rankedBlocks[l]
        rankedBlocks[l] = blocks    // before loading: the recalled rows go behind the block being filled now
        let keep = settings.candidatesKept
        representatives[l].withUnsafeBufferPointer { reps in
            for h in 0..<kvHeadCount {
                // The best `keep` contenders by score, best first, in one pass.
                let q = querySum + h * hd
                best.removeAll(keepingCapacity: true)
                func consider(_ block: Int) {
                    if let hidden, hidden.overlaps(blockStarts[block] ..< blockStarts[block] + settings.blockSize) { return }
                    let rep = reps.baseAddress! + (block * kvHeadCount + h) * hd
                    var s: Float = 0
                    for j in 0..<hd { s += q[j] * rep[j] }
                    if best.count == keep, let last = best.last, s <= last.score { return }
                    best.insert((block, s), at: best.firstIndex { $0.score < s } ?? best.count)
                    if best.count > keep { best.removeLast() }
                }
                if full {
                    for block in 0..<blocks { consider(block) }
                } else {
                    for block in candidates[l][h] { consider(block) }
                    for block in previouslyRanked..<blocks { consider(block) }
                }
                // Bounded: the next re-ranking looks at these and at newer blocks.
                candidates[l][h].removeAll(keepingCapacity: true)
                for entry in best { candidates[l][h].append(entry.block) }
                // The top blocks, in stream order (a few: insertion sort, in place).
                chosen.removeAll(keepingCapacity: true)
                for entry in best.prefix(settings.topBlocks) {
                    var at = chosen.count
                    while at > 0, chosen[at - 1].block > entry.block { at -= 1 }
                    chosen.insert(entry, at: at)
                }
                // Also the same blocks when a block finished since: back behind the one being
                // filled (reloaded rather than turned in place, so a resumed session, which
                // loads them afresh, continues bit for bit).
                let same = chosen.count == recalled[l][h].count && zip(chosen, recalled[l][h]).allSatisfy { $0.block == $1.block }
                if !same || settings.positions == .chronological && previouslyRanked != blocks {
                    // Keep the ones that could be read, in order.
                    let requested = chosen.count
                    var kept = 0
                    for i in 0..<requested where loadBlock(chosen[i].block, layer: l, head: h, slot: kept, of: requested) {
                        chosen[kept] = chosen[i]
                        kept += 1
                    }
                    chosen.removeLast(requested - kept)
                }
                recalled[l][h].removeAll(keepingCapacity: true)
                recalled[l][h].append(contentsOf: chosen)
            }
        }
    }

    /// Copies the given blocks of one KV head into the layer's recall buffer, behind the
    /// recall anchor, and returns the ones that could be read (a block whose file write
    /// failed cannot). Loading a session's recalled set goes through here.
    func load(layer l: Int, head h: Int, blocks: [Int]) -> [Int] {
        var loaded: [Int] = []
        for block in blocks where loadBlock(block, layer: l, head: h, slot: loaded.count, of: blocks.count) {
            loaded.append(block)
        }
        return loaded
    }

    /// Copies one block into recall slot `slot` of the `count` being loaded for (layer l, KV
    /// head h); false if it cannot be read. Values are copied as stored; keys are too when
    /// they stay where they are (`.same`), else dequantized, rotated and quantized again.
    /// Allocates nothing: decoding re-ranks through here every `refreshEvery` tokens.
    private func loadBlock(_ block: Int, layer l: Int, head h: Int, slot k: Int, of count: Int) -> Bool {
        guard let base = store.read(block * layerCount + l, into: blob) else { return false }
        let b = settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP), slots = settings.topBlocks * b
        let row = h * slots + k * b
        let keys = recallKeys[l] + row * hd, keyScales = recallKeyScales[l] + row * groups
        recallValues[l].advanced(by: row * hd).update(from: valueCodes(base, h), count: b * hd)
        recallValueScales[l].advanced(by: row * groups).update(from: scales(base, kvHeadCount + h), count: b * groups)
        for r in 0..<b { recallPositions[l][row + r] = Int64(blockStarts[block] + r) }
        // Every row of the block moves by the same amount: one rotation for all.
        let from = canonicalPosition(0), to = recalledPosition(k * b, count: count * b, anchor: recallAnchor(layer: l))
        if from == to {
            keys.update(from: keyCodes(base, h), count: b * hd)
            keyScales.update(from: scales(base, h), count: b * groups)
        } else {
            for r in 0..<b { ck_dequantize_kv_row(keyCodes(base, h) + r * hd, scales(base, h) + r * groups, turning + r * hd, Int32(hd)) }
            rotate(turning, rows: b, stride: hd, from: from, to: to)
            for r in 0..<b { ck_quantize_kv_row(turning + r * hd, keys + r * hd, keyScales + r * groups, Int32(hd)) }
        }
        return true
    }

    /// Segments `writeSegments` writes at most.
    static let maxSegments = 3

    /// What one KV head of one layer attends to beyond the cache: the recalled blocks and the
    /// block being filled, never masked by the window; scored with the queries at their own
    /// positions (`.same`: with the sink-rotated queries). Written to `into` (room for
    /// `maxSegments`); returns how many. The block being filled leaves out its `hidden`
    /// positions (its tokens are consecutive, so what is left is at most two runs); ranking
    /// leaves out the finished blocks that hold any.
    func writeSegments(layer l: Int, head h: Int, hidden: Range<Int>? = nil, into out: UnsafeMutablePointer<ck_kv_segment>) -> Int {
        let b = settings.blockSize, hd = headDim, slots = settings.topBlocks * b
        let f32 = Int32(CK_KV_F32.rawValue), sinkQuery: Int32 = settings.positions == .same ? 1 : 0
        let groups = hd / Int(CK_KV_GROUP)
        var n = 0
        let recalledRows = recalled[l][h].count * b
        if recalledRows > 0 {
            out[n] = ck_kv_segment(type: Int32(CK_KV_Q8.rawValue), sink_query: sinkQuery, windowed: 0,
                                   keys: recallKeys[l] + h * slots * hd, values: recallValues[l] + h * slots * hd,
                                   key_scales: recallKeyScales[l] + h * slots * groups,
                                   value_scales: recallValueScales[l] + h * slots * groups, row_stride: Int64(hd),
                                   count: Int64(recalledRows), positions: recallPositions[l] + h * slots)
            n += 1
        }
        func appendPending(_ rows: Range<Int>) {
            guard !rows.isEmpty else { return }
            let first = rows.lowerBound
            out[n] = ck_kv_segment(type: f32, sink_query: sinkQuery, windowed: 0,
                                   keys: pendingKeys[l] + (h * b + first) * hd, values: pendingValues[l] + (h * b + first) * hd,
                                   key_scales: nil, value_scales: nil, row_stride: Int64(hd),
                                   count: Int64(rows.count), positions: pendingPositions[l] + first)
            n += 1
        }
        let pending = 0..<pendingCount[l]
        if let hidden, let start = pending.first.map({ Int(pendingPositions[l][$0]) }) {
            let cut = (hidden.lowerBound - start) ..< (hidden.upperBound - start)
            appendPending(pending.lowerBound ..< min(pending.upperBound, max(0, cut.lowerBound)))
            appendPending(max(0, min(pending.upperBound, cut.upperBound)) ..< pending.upperBound)
        } else {
            appendPending(pending)
        }
        return n
    }

    /// `writeSegments` as an array (a prefill chunk, where one array per chunk is nothing).
    func segments(layer l: Int, head h: Int, hidden: Range<Int>? = nil) -> [ck_kv_segment] {
        [ck_kv_segment](unsafeUninitializedCapacity: BlockMemory.maxSegments) { buffer, count in
            count = writeSegments(layer: l, head: h, hidden: hidden, into: buffer.baseAddress!)
        }
    }

    /// One block of the last ranking, seen across layers and KV heads (for `/recall`).
    public struct Recall: Equatable {
        public let block: Int
        public let start: Int     // stream position of its first token
        public let tokens: Int
        public let picks: Int     // how many (layer, KV head) pairs recalled it
    }

    /// The blocks recalled at each layer's last ranking, most picked first.
    public func lastRecall() -> [Recall] {
        var picks: [Int: Int] = [:]
        for layer in recalled { for head in layer { for r in head { picks[r.block, default: 0] += 1 } } }
        return picks.map { Recall(block: $0.key, start: blockStarts[$0.key], tokens: settings.blockSize, picks: $0.value) }
            .sorted { ($0.picks, $1.block) > ($1.picks, $0.block) }
    }

    /// Blocks the next re-ranking while decoding will score in one layer and KV head (tests).
    func contenders(layer l: Int, head h: Int) -> Int { candidates[l][h].count + blockCount[l] - rankedBlocks[l] }

    /// Whether layer l has anything to attend to (decoding then takes the block path).
    func isEmpty(layer l: Int) -> Bool { blockCount[l] == 0 && pendingCount[l] == 0 }

    public func reset() {
        for l in 0..<layerCount {
            pendingCount[l] = 0
            blockCount[l] = 0
            representatives[l] = []
            rankedBlocks[l] = 0
            sinceRanking[l] = 0
            for h in 0..<kvHeadCount { recalled[l][h].removeAll(keepingCapacity: true); candidates[l][h].removeAll(keepingCapacity: true) }
        }
        blockStarts = []
        store.reset()
        scorer.reset()
    }
}
