import CKernels
@testable import Engine
import XCTest

/// The block memory (Memory/BlockMemory.swift): keys turned back to position 0 on eviction,
/// blocks finished in order, ranking by representative keys, int8 contents and the spill to
/// a file, and the real model finding a passkey that left its window.
final class BlockMemoryTests: XCTestCase {
    let hd = 64, heads = 2

    func makeMemory(blockSize: Int = 4, topBlocks: Int = 2, ramBudget: Int = 1 << 30, rope: RopeTable? = nil) -> BlockMemory {
        var s = MemorySettings()
        s.blockSize = blockSize
        s.topBlocks = topBlocks
        s.ramBudget = ramBudget
        s.positions = .same
        let table = rope ?? RopeTable(headDim: hd, positions: 4096, base: 10000)
        return BlockMemory(layerCount: 1, kvHeadCount: heads, headDim: hd, rope: table, ropeMode: 0, settings: s, sinks: 4, window: 16)
    }

    /// Feeds one token's keys (rotated at `position`, as the cache stores them) and values.
    func evict(_ memory: BlockMemory, position: Int, keys raw: [Float], values: [Float], rope: RopeTable) {
        var keys = raw
        let half = hd / 2
        var cos = [Float](repeating: 0, count: half), sin = cos
        rope.fill(position, cos: &cos, sin: &sin)
        keys.withUnsafeMutableBufferPointer { k in
            for h in 0..<heads { ck_rope(k.baseAddress! + h * hd, Int32(hd), cos, sin, 0) }
        }
        keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in
            memory.absorb(EvictedToken(layer: 0, position: position, keys: k.baseAddress!, values: v.baseAddress!, stride: hd))
        } }
    }

    func rows(_ segment: ck_kv_segment, keys: Bool) -> [Float] {
        let base = (keys ? segment.keys : segment.values)!.assumingMemoryBound(to: Float.self)
        return Array(UnsafeBufferPointer(start: base, count: Int(segment.count) * hd))
    }

    /// An evicted key rotated at position p comes back as the same key rotated at position 0
    /// — mscale included once, with YaRN — so the sink-rotated query sees it at one distance.
    func testKeysTurnBackToPositionZero() {
        let rope = RopeTable(headDim: hd, positions: 8192, base: 10000,
                             scaling: RopeScaling(kind: .yarn, factor: 4, originalContext: 2048))
        XCTAssertGreaterThan(rope.mscale, 1.1)
        let memory = makeMemory(blockSize: 8, rope: rope)
        var rng = RandomGenerator(seed: 41)
        let raw = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let values = (0..<heads * hd).map { _ in Float(rng.nextUnit()) }
        evict(memory, position: 5000, keys: raw, values: values, rope: rope)
        // The expected key: raw rotated at position 0, i.e. raw times mscale.
        for h in 0..<heads {
            let segment = memory.segments(layer: 0, head: h)
            XCTAssertEqual(segment.count, 1, "only the block being filled")
            XCTAssertEqual(segment[0].count, 1)
            XCTAssertEqual(segment[0].positions[0], 5000)
            let key = rows(segment[0], keys: true)
            for j in 0..<hd { XCTAssertEqual(key[j], raw[h * hd + j] * Float(rope.mscale), accuracy: 1e-5, "head \(h) dim \(j)") }
            XCTAssertEqual(rows(segment[0], keys: false), Array(values[h * hd..<(h + 1) * hd]))
        }
    }

    /// With chronological positions, slot i of the block being filled sits window + block − 1 − i
    /// away from the sink-rotated query (position sinks + window − 1): q·k equals the raw
    /// vectors rotated that far apart.
    func testChronologicalPositionsGiveStreamOrderDistances() {
        let rope = RopeTable(headDim: hd, positions: 4096, base: 10000)
        var s = MemorySettings()
        s.blockSize = 8
        s.positions = .chronological
        let memory = BlockMemory(layerCount: 1, kvHeadCount: heads, headDim: hd, rope: rope, ropeMode: 0, settings: s, sinks: 4, window: 16)
        var rng = RandomGenerator(seed: 43)
        let q = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        var raws: [[Float]] = []
        for i in 0..<5 {
            let raw = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            raws.append(raw)
            evict(memory, position: 1000 + i, keys: raw, values: raw, rope: rope)
        }
        func rotated(_ x: [Float], at p: Int) -> [Float] {
            var y = x, cos = [Float](repeating: 0, count: hd / 2), sin = cos
            rope.fill(p, cos: &cos, sin: &sin)
            ck_rope(&y, Int32(hd), cos, sin, 0)
            return y
        }
        func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { $0 * $1 }.reduce(0, +) }
        let query = rotated(q, at: 4 + 16 - 1)
        let keys = rows(memory.segments(layer: 0, head: 1)[0], keys: true)
        for i in 0..<5 {
            let distance = 16 + 8 - 1 - i
            let expected = dot(rotated(q, at: distance), rotated(Array(raws[i][hd..<2 * hd]), at: 0))
            XCTAssertEqual(dot(query, Array(keys[i * hd..<(i + 1) * hd])), expected, accuracy: 1e-3, "slot \(i)")
        }
    }

    /// Six blocks of four tokens; block 3 (head 0) and block 5 (head 1) point along the
    /// query. Ranking recalls them, in chronological order with at most topBlocks, and the
    /// recalled rows are the evicted ones within int8's bound — also when the budget sends
    /// every block to the temporary file.
    func testRankingRecallsTheMatchingBlockFromRAMOrFile() {
        let rope = RopeTable(headDim: hd, positions: 4096, base: 10000)
        var rng = RandomGenerator(seed: 42)
        let direction = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        var evicted: [(keys: [Float], values: [Float])] = []
        for t in 0..<26 {
            var keys = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 0.2 - 0.1) }
            if t / 4 == 3 { for j in 0..<hd { keys[j] += direction[j] } }
            if t / 4 == 5 { for j in 0..<hd { keys[hd + j] += direction[j] } }
            evicted.append((keys, (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }))
        }
        var recalledRows: [[Float]] = []
        for budget in [1 << 30, 0] {
            let memory = makeMemory(ramBudget: budget)
            for (t, e) in evicted.enumerated() { evict(memory, position: 100 + t, keys: e.keys, values: e.values, rope: rope) }
            XCTAssertEqual(memory.blocks, 6)
            XCTAssertEqual(memory.tokens, 26)
            XCTAssertEqual(memory.blockStarts, [100, 104, 108, 112, 116, 120])
            if budget == 0 { XCTAssertGreaterThan(memory.fileBytes, 0) } else { XCTAssertEqual(memory.fileBytes, 0) }
            // Two query heads per KV head, both along the direction.
            let queries = (0..<2 * heads).flatMap { _ in direction }
            memory.rank(layer: 0, queries: queries, n: 1, headCount: 2 * heads, full: true)
            for h in 0..<heads {
                let blocks = memory.recalled[0][h].map(\.block)
                XCTAssertEqual(blocks.count, 2)
                XCTAssertTrue(blocks.contains(h == 0 ? 3 : 5), "head \(h) recalled \(blocks)")
                XCTAssertEqual(blocks, blocks.sorted(), "chronological order")
                let segments = memory.segments(layer: 0, head: h)
                XCTAssertEqual(segments.map(\.count), [8, 2], "two recalled blocks, then the two tokens of the unfinished block")
                let keys = rows(segments[0], keys: true), values = rows(segments[0], keys: false)
                recalledRows.append(keys + values)
                for (k, block) in blocks.enumerated() {
                    for r in 0..<4 {
                        let t = block * 4 + r
                        XCTAssertEqual(segments[0].positions[k * 4 + r], Int64(100 + t))
                        for j in 0..<hd {
                            // Values come back within int8's step; keys were rotated back first (f32 rounding).
                            XCTAssertEqual(values[(k * 4 + r) * hd + j], evicted[t].values[h * hd + j], accuracy: 1.0 / 254 + 1e-6)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(recalledRows[0], recalledRows[2], "head 0: RAM and file give the same rows")
        // Provenance: blocks 3 and 5 were each picked by one KV head.
        let memory = makeMemory()
        for (t, e) in evicted.enumerated() { evict(memory, position: 100 + t, keys: e.keys, values: e.values, rope: rope) }
        memory.rank(layer: 0, queries: (0..<2 * heads).flatMap { _ in direction }, n: 1, headCount: 2 * heads, full: true)
        let recall = memory.lastRecall()
        XCTAssertEqual(recall.map(\.picks).reduce(0, +), 4, "two blocks for each of two heads")
        XCTAssertTrue(recall.contains(BlockMemory.Recall(block: 3, start: 112, tokens: 4, picks: recall.first { $0.block == 3 }!.picks)))
        XCTAssertEqual(recalledRows[1], recalledRows[3], "head 1: RAM and file give the same rows")
    }

    /// While decoding, re-rankings score at most candidateFactor·topBlocks earlier blocks plus
    /// the ones finished since: the cost per token does not grow with the stream.
    func testDecodingReRanksABoundedCandidateSet() {
        let rope = RopeTable(headDim: hd, positions: 4096, base: 10000)
        let memory = makeMemory(blockSize: 4, topBlocks: 2)   // candidateFactor 4: 8 candidates
        var rng = RandomGenerator(seed: 44)
        let query = (0..<2 * heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        var position = 0
        func evictBlock() {
            for _ in 0..<4 {
                let keys = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
                evict(memory, position: position, keys: keys, values: keys, rope: rope)
                position += 1
            }
        }
        for _ in 0..<50 { evictBlock() }
        memory.rank(layer: 0, queries: query, n: 1, headCount: 2 * heads, full: true)
        XCTAssertEqual(memory.contenders(layer: 0, head: 0), 8)
        for step in 0..<200 {
            if step % 5 == 0 { evictBlock() }
            memory.rank(layer: 0, queries: query, n: 1, headCount: 2 * heads, full: false)
            XCTAssertLessThanOrEqual(memory.contenders(layer: 0, head: 0), 8 + 4, "step \(step)")
            XCTAssertEqual(memory.recalled[0][0].count, 2)
        }
        XCTAssertEqual(memory.blocks, 90)
    }

    /// The real model with a 256-token window: a passkey ~1,000 tokens back is found with
    /// the memory on and missed with it off (the memory is what works).
    func testPasskeyBeyondTheWindowNeedsTheMemory() throws {
        let (model, tokenizer) = TestSupport.shared
        var settings = SamplerSettings()
        settings.temperature = 0
        let ids = Passkey.prompt(tokens: 1200, depth: 0.1, key: 31_415, tokenizer: tokenizer)
        var answers: [Bool: String] = [:]
        for memoryOn in [true, false] {
            let cache = model.makeCache(policy: CachePolicy(sinks: 4, window: 256), memory: memoryOn ? MemorySettings() : nil)
            let generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: settings), cache: cache)
            try generator.feed(ids)
            var answer = ""
            generator.generate(maxTokens: 8) { answer += $0; return true }
            answers[memoryOn] = answer
        }
        XCTAssertEqual(Passkey.firstInteger(in: answers[true]!), 31_415, "memory on answered \(answers[true]!)")
        XCTAssertNotEqual(Passkey.firstInteger(in: answers[false]!), 31_415, "memory off answered \(answers[false]!)")
    }
}
