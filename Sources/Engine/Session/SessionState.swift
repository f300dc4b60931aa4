import CKernels
import Foundation

// Each stateful part writes and reads its own state in a session body (SessionFile frames
// it), as llama.cpp's state_write/state_read do: whole, or only what changed since the
// stream held `since` tokens — the cache slots that hold newer positions, the memory blocks
// finished since, and the small parts (the block being filled, the scorer, the ranking)
// whole. A follow-up question to a 32K-token session used to rewrite all of its hundreds
// of MB; it now appends the window's new rows and the blocks that left it.

extension KVCache {
    /// The slots holding positions ≥ `since`, as runs in slot order: all `count` slots when
    /// `since` is 0, else the ring's newest rows (at most two runs, where the ring wraps).
    func slotRuns(since n0: Int) -> [Range<Int>] {
        let n = tokensSeen, s = policy.sinks
        guard let w = policy.window else { return n0 < n ? [n0 ..< n] : [] }
        var runs: [Range<Int>] = []
        if n0 < min(s, n) { runs.append(n0 ..< min(s, n)) }
        let first = max(s, n - w, n0)
        if first < n {
            let a = slot(ofPosition: first), end = a + (n - first)
            if end <= s + w { runs.append(a ..< end) } else { runs += [a ..< s + w, s ..< end - w] }
        }
        var merged: [Range<Int>] = []
        for run in runs.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, last.upperBound == run.lowerBound { merged[merged.count - 1] = last.lowerBound ..< run.upperBound } else { merged.append(run) }
        }
        return merged
    }

    /// For each layer, keys then values, each KV head: the rows of `slotRuns(since:)`.
    func writeState(_ w: BodyWriter, since n0: Int, codec: RowCodec) throws {
        try forEachRun(since: n0) { f, int8, rows in try codec.put(f32: f, int8: int8.map { (UnsafePointer($0.0), UnsafePointer($0.1)) }, rows: rows, to: w) }
    }

    /// Reads what `writeState` wrote, once `restore(tokensSeen:)` has set the stream's length.
    func readState(_ r: BodyReader, since n0: Int, codec: RowCodec) throws {
        try forEachRun(since: n0) { f, int8, rows in try codec.get(f32: f, int8: int8, rows: rows, from: r) }
    }

    private func forEachRun(since n0: Int, _ body: (UnsafeMutablePointer<Float>?, (UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>)?, Int) throws -> Void) throws {
        let hd = headDim, groups = hd / Int(CK_KV_GROUP), runs = slotRuns(since: n0)
        for l in 0..<layerCount {
            for (rows, scales) in [(keys[l], keyScales[l]), (values[l], valueScales[l])] {
                for h in 0..<kvHeadCount {
                    for run in runs {
                        let row = h * capacity + run.lowerBound
                        if precision == .int8 {
                            try body(nil, (rows.assumingMemoryBound(to: Int8.self) + row * hd, scales + row * groups), run.count)
                        } else {
                            try body(rows.assumingMemoryBound(to: Float.self) + row * hd, nil, run.count)
                        }
                    }
                }
            }
        }
    }
}

extension BlockMemory {
    /// Blocks finished once the stream holds n tokens in a cache of `capacity`.
    func blocks(atTokens n: Int, capacity: Int) -> Int { max(0, n - capacity) / settings.blockSize }

    /// For each layer: the block being filled (keys and values per KV head, as `rows`), the
    /// representatives of the blocks finished since, and the scorer's state (the scores of
    /// the block being filled, the ring of query sums); then the finished blocks since, per
    /// layer; then the ranking (u32 length + JSON).
    func writeState(_ w: BodyWriter, since n0: Int, capacity: Int, codec: RowCodec) throws {
        let b = settings.blockSize, hd = headDim, first = blocks(atTokens: n0, capacity: capacity)
        let per = kvHeadCount * hd
        for l in 0..<layerCount {
            let pending = pendingCount[l]
            for h in 0..<kvHeadCount {
                try codec.put(f32: pendingKeys[l] + h * b * hd, int8: nil, rows: pending, to: w)
                try codec.put(f32: pendingValues[l] + h * b * hd, int8: nil, rows: pending, to: w)
            }
            try representatives[l].withUnsafeBytes { try w.put(raw: UnsafeRawBufferPointer(rebasing: $0[(first * per * 4)...])) }
            for h in 0..<kvHeadCount {
                try w.put(raw: UnsafeRawBufferPointer(start: scorer.scores[l] + h * b, count: pending * 4))
            }
            try w.put(raw: UnsafeRawBufferPointer(start: scorer.ring[l], count: scorer.ringSize * kvHeadCount * hd * 4))
        }
        for block in first..<blocks {
            for l in 0..<layerCount {
                guard let stored = store.read(block * layerCount + l, into: self.blob) else {
                    throw Zstd.Failure(description: "memory block \(block) is unreadable (\(failure ?? "lost"))")
                }
                if codec.encoding == .lossless {
                    try w.put(raw: UnsafeRawBufferPointer(start: stored, count: store.blobBytes))
                } else {
                    try codec.encodeBlob(stored, memory: self, to: w)
                }
            }
        }
        let ranking = Array(try JSONEncoder().encode(RankingState(self)))
        try w.put(UInt32(ranking.count)); try w.put(bytes: ranking)
    }

    /// Reads what `writeState` wrote for a stream now n tokens long (format `version`: 1 had
    /// the block being filled at canonical positions, before 3 the scorer was not stored).
    func readState(_ r: BodyReader, since n0: Int, tokens n: Int, capacity: Int, sinks: Int, codec: RowCodec, version: UInt32) throws {
        let b = settings.blockSize, hd = headDim, kvh = kvHeadCount
        let first = blocks(atTokens: n0, capacity: capacity), total = blocks(atTokens: n, capacity: capacity)
        let pending = max(0, n - capacity) % b
        guard first == blocks else { throw Zstd.Failure(description: "memory holds \(blocks) blocks, the record continues from \(first)") }
        for l in 0..<layerCount {
            for i in 0..<pending { pendingPositions[l][i] = Int64(sinks + total * b + i) }
            for h in 0..<kvh {
                try codec.get(f32: pendingKeys[l] + h * b * hd, int8: nil, rows: pending, from: r)
                try codec.get(f32: pendingValues[l] + h * b * hd, int8: nil, rows: pending, from: r)
            }
            pendingCount[l] = pending
            if version == 1 { turnPending(layer: l, keys: pendingKeys[l], toCanonical: false) }
            let added = try r.array(Float.self, count: (total - first) * kvh * hd)
            try added.withUnsafeBufferPointer { try SessionFile.requireFinite($0, "representative key") }
            representatives[l] += added
            blockCount[l] = total
            // Before version 3 there were none: the block being filled is scored from here on.
            if version >= 3 {
                for h in 0..<kvh {
                    try r.read(into: UnsafeMutableRawBufferPointer(start: scorer.scores[l] + h * b, count: pending * 4))
                    try SessionFile.requireFinite(UnsafeBufferPointer(start: scorer.scores[l] + h * b, count: pending), "block score")
                }
                try r.read(into: UnsafeMutableRawBufferPointer(start: scorer.ring[l], count: scorer.ringSize * kvh * hd * 4))
                try SessionFile.requireFinite(UnsafeBufferPointer(start: scorer.ring[l], count: scorer.ringSize * kvh * hd), "query sum")
            }
        }
        scorer.restore(tokensSeen: n)
        blockStarts = (0..<total).map { sinks + $0 * b }
        for block in first..<total {
            for l in 0..<layerCount {
                if codec.encoding == .lossless {
                    try r.read(into: UnsafeMutableRawBufferPointer(start: blob, count: store.blobBytes))
                    try SessionFile.requireFinite(blobScales, "memory scale")
                } else {
                    try codec.decodeBlob(from: r, memory: self)
                }
                store.write(block * layerCount + l, from: blob)
            }
        }
        if let why = failure { throw Zstd.Failure(description: "cannot hold the memory: \(why)") }
        let json = try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)
        guard let ranking = try? JSONDecoder().decode(RankingState.self, from: Data(json)) else {
            throw Zstd.Failure(description: "memory ranking record unreadable")
        }
        try ranking.apply(to: self)
    }
}
