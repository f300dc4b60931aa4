import CKernels

/// Which keys of a block stand for it when blocks are ranked: InfLLM's representative tokens
/// (Xiao et al. 2024, §3.2), the keys that the queries after them gave the highest attention
/// logits while they were in the window, r_m = Σ_j q_j·k_m. A block's representative is the
/// mean of its `MemorySettings.representativeKeys` best (0: of all its keys).
///
/// The sum of each window block's queries — rotated at their own positions, summed over the
/// query heads of a KV head — is kept in a ring; a leaving key, still rotated at its own
/// position as the window had it, is scored against the sums of the blocks after its own.
/// The dot product is linear, so that is exactly the sum of the logits those queries gave
/// it (the queries of its own block are left out). Cost: a few hundred adds per token and
/// layer; RAM: the ring, ~30 KB per layer with the default window.
///
/// Measured (passkey, greedy, window 1024, blocks of 64, top 8; "recalled by" = layer-heads
/// whose recalled set holds the needle): 8K, seed 21, depths 0–0.75: mean of all keys 87,
/// 80, 137, 71 layer-heads; the best 16: 88, 86, 159, 79; the best 4: 89, 82, 168, 82. At
/// 32K the needle the mean missed on every setting tried (key 12338, depth 0.5, answered
/// "123456") was recalled by 136 layer-heads with the mean and 168 with the best 4, and
/// read right. `scroll ppl` over 16K tokens of the vim docs: 11.506 (mean), 11.515 (best 4).
final class RepresentativeScorer {
    let kvHeadCount: Int, headDim: Int, blockSize: Int, sinks: Int
    /// Window blocks whose query sums are kept: those a leaving token's block is followed by
    /// while in the window (window/blockSize + 1), those a prefill chunk notes before its
    /// tokens evict (prefillBatch/blockSize + 1), and one spare.
    let ringSize: Int
    let ring: [UnsafeMutablePointer<Float>]          // per layer: [ringSize][kv_head][head_dim]
    private var ringBlock: [[Int]]                   // per layer: the window block each ring slot holds, or −1
    /// What each row of the block being filled received, per layer: [kv_head][blockSize].
    let scores: [UnsafeMutablePointer<Float>]
    private let sum: UnsafeMutablePointer<Float>     // [head_dim]
    private let taken: UnsafeMutablePointer<Bool>    // [blockSize]

    init(layerCount: Int, kvHeadCount: Int, headDim: Int, blockSize b: Int, sinks: Int, window: Int) {
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.blockSize = b
        self.sinks = sinks
        let ringSize = (window + b - 1) / b + (Transformer.prefillBatch + b - 1) / b + 3
        self.ringSize = ringSize
        ring = (0..<layerCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: ringSize * kvHeadCount * headDim)
            p.initialize(repeating: 0, count: ringSize * kvHeadCount * headDim)
            return p
        }
        ringBlock = Array(repeating: Array(repeating: -1, count: ringSize), count: layerCount)
        scores = (0..<layerCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: kvHeadCount * b)
            p.initialize(repeating: 0, count: kvHeadCount * b)
            return p
        }
        sum = .allocate(capacity: headDim)
        taken = .allocate(capacity: b)
    }

    deinit {
        for p in ring + scores { p.deallocate() }
        sum.deallocate()
        taken.deallocate()
    }

    /// The window block of stream position p (p ≥ sinks).
    private func block(of p: Int) -> Int { (p - sinks) / blockSize }

    /// Adds the queries of n tokens from stream position `first` (rows of headCount·headDim,
    /// rotated at their own positions) to their blocks' sums.
    func note(layer l: Int, queries: UnsafePointer<Float>, n: Int, first: Int, headCount: Int) {
        let hd = headDim, group = headCount / kvHeadCount, qDim = headCount * hd
        for t in 0..<n where first + t >= sinks {
            let b = block(of: first + t), slot = b % ringSize
            let sums = ring[l] + slot * kvHeadCount * hd
            if ringBlock[l][slot] != b {
                sums.update(repeating: 0, count: kvHeadCount * hd)
                ringBlock[l][slot] = b
            }
            for head in 0..<headCount { ck_add(sums + (head / group) * hd, queries + t * qDim + head * hd, Int32(hd)) }
        }
    }

    /// Scores row `row` of the block being filled: the logits the queries noted after
    /// `position`'s block gave `key` (one KV head, rotated at `position`).
    func score(layer l: Int, head h: Int, row: Int, key: UnsafePointer<Float>, position: Int) {
        let hd = headDim, own = block(of: position)
        sum.update(repeating: 0, count: hd)
        for slot in 0..<ringSize where ringBlock[l][slot] > own {
            ck_add(sum, ring[l] + (slot * kvHeadCount + h) * hd, Int32(hd))
        }
        var s: Float = 0
        for j in 0..<hd { s += sum[j] * key[j] }
        scores[l][h * blockSize + row] = s
    }

    /// Calls `body` with the rows of a full block (one layer and KV head) that stand for it:
    /// the `keep` best scored (ties: the earlier row), or every row when `keep` is 0 or the
    /// whole block. Allocates nothing.
    func forEachRepresentative(layer l: Int, head h: Int, keep: Int, _ body: (Int) -> Void) {
        let b = blockSize
        guard keep > 0 && keep < b else { for row in 0..<b { body(row) }; return }
        let s = scores[l] + h * b
        taken.update(repeating: false, count: b)
        for _ in 0..<keep {
            var best = -1
            for row in 0..<b where !taken[row] && (best < 0 || s[row] > s[best]) { best = row }
            taken[best] = true
        }
        for row in 0..<b where taken[row] { body(row) }
    }

    /// The ring as it stands after a stream of n tokens, every position from `sinks` on noted
    /// (a session being loaded then fills the sums): the latest ringSize blocks.
    func restore(tokensSeen n: Int) {
        for l in ringBlock.indices {
            for slot in 0..<ringSize { ringBlock[l][slot] = -1 }
            guard n > sinks else { continue }
            let latest = block(of: n - 1)
            for b in max(0, latest - ringSize + 1)...latest { ringBlock[l][b % ringSize] = b }
        }
    }

    func reset() {
        for l in ringBlock.indices {
            for slot in 0..<ringSize { ringBlock[l][slot] = -1 }
        }
    }
}
