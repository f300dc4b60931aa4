import CKernels

/// The cache policy: what is kept, what is evicted, what positions tokens get.
///
/// StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with Attention
/// Sinks"): keep the first `sinks` tokens forever — softmax dumps attention mass on them, and
/// perplexity explodes once they leave — plus a sliding window of the `window` most recent
/// tokens. When full, each new token evicts the oldest window token: no halving, no pause.
/// `window == nil` is the plain dense cache (`--dense`): nothing is evicted and a full cache
/// is an error.
public struct CachePolicy: Equatable {
    public var sinks: Int
    public var window: Int?

    public init(sinks: Int = CachePolicy.defaultSinks, window: Int?) {
        self.sinks = sinks
        self.window = window
    }

    /// StreamingLLM's four sinks: enough to hold the attention softmax dumps on the start.
    /// Also with the block memory: keeping the first 64 (as InfLLM keeps its first 128) firmed
    /// the passkey answers whose needle sat in the window but weakened those read from the
    /// memory on the AVX2 kernels (32K, seed 31: 8/10 there, 10/10 with AVX-512; docs/benchmarks.md).
    public static let defaultSinks = 4

    public static func dense(_ capacity: Int) -> CachePolicy { CachePolicy(sinks: capacity, window: nil) }

    /// Slots the cache holds: sinks + window (or the dense capacity).
    public var capacity: Int { sinks + (window ?? 0) }
}

/// How cached keys and values are stored. `.int8`: each row of head_dim values as int8
/// with one f32 scale per 32 (attention.c): 3.6× smaller than f32; logits move by a few
/// hundredths (CacheTests) and streaming perplexity by well under 1% (docs/benchmarks.md).
public enum KVPrecision: String, CaseIterable {
    case f32, int8

    /// Bytes one row of `headDim` values takes.
    func rowBytes(headDim: Int) -> Int {
        switch self {
        case .f32: return headDim * 4
        case .int8: return headDim + headDim / Int(CK_KV_GROUP) * 4
        }
    }
}

/// One token's keys and values leaving the window, handed to the eviction hook (the block
/// memory) before its slot is reused. Keys are as stored: rotated by `position`.
public struct EvictedToken {
    public let layer: Int
    public let position: Int                 // absolute position in the stream
    public let keys: UnsafePointer<Float>    // [kv_head] rows of head_dim, stride `stride`
    public let values: UnsafePointer<Float>
    public let stride: Int                   // floats between one KV head's row and the next
}

/// Keys and values per layer, laid out for the attention kernel: [layer][kv_head][slot]
/// [head_dim], one head's slots contiguous (f32, or int8 codes plus per-group scales). Slots 0 ..< sinks hold the sink tokens; the
/// window is a ring over slots sinks ..< capacity, so eviction copies nothing.
///
/// Positions. RoPE makes q·k depend only on the distance between the two positions. Window
/// keys are stored rotated by their absolute stream position p, and the query is rotated by
/// its absolute position P for them: the distance P − p is exactly the one StreamingLLM's
/// "positions inside the cache" give, because the window is a contiguous run of recent
/// tokens. Sink keys are rotated by their slot 0 … sinks−1, and the query gets a second
/// rotation, by its cache position min(P, capacity − 1), for them. So no key is ever
/// re-rotated, eviction is a slot overwrite, and no distance exceeds the cache's capacity.
public final class KVCache {
    public let layerCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let policy: CachePolicy
    public let precision: KVPrecision
    public let capacity: Int
    /// Tokens seen since the start (or the last reset); the next token's absolute position.
    public internal(set) var tokensSeen = 0
    /// Called for each layer of a token about to be overwritten.
    public var onEvict: ((EvictedToken) -> Void)?
    /// Where evicted tokens go to be recalled; nil: they are dropped.
    public internal(set) var memory: BlockMemory?
    /// Each layer's index in the memory, nil for a layer that keeps none (Gemma 3's local
    /// layers attend to their own last 512 positions only, so the memory holds the global
    /// layers alone: a sixth of the blocks).
    var memoryLayers: [Int?]
    /// Stream positions that attention leaves out while set, in the window (writeSegments) and
    /// in the block memory (its ranking and its block being filled): a conversation hides its
    /// earlier exchanges while a question about a document is read and answered. Not saved:
    /// it is set only for the length of one reply.
    public var hidden: Range<Int>?
    /// Rows the window overwrote since each mark still held, oldest mark first (Rewind.swift).
    var journals: [KVJournal] = []
    private let storage: UnsafeMutableRawPointer  // every layer's keys, then values
    var keys: [UnsafeMutableRawPointer]        // per layer: [kv_head][capacity][head_dim] f32 or int8
    var values: [UnsafeMutableRawPointer]
    var keyScales: [UnsafeMutablePointer<Float>]    // int8: per layer [kv_head][capacity][head_dim/32]
    var valueScales: [UnsafeMutablePointer<Float>]
    private let evicted: UnsafeMutablePointer<Float>   // int8: [2][kv_head][head_dim], a leaving token as f32
    let positions: UnsafeMutablePointer<Int64> // [capacity] the stream position each slot holds

    public init(layerCount: Int, kvHeadCount: Int, headDim: Int, policy: CachePolicy, precision: KVPrecision = .f32) {
        precondition(policy.sinks >= 0 && (policy.window ?? 1) >= 1 && policy.capacity >= 1)
        precondition(precision == .f32 || headDim % Int(CK_KV_GROUP) == 0, "int8 KV needs head_dim divisible by \(CK_KV_GROUP)")
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.policy = policy
        self.precision = precision
        self.capacity = policy.capacity
        memoryLayers = Array(0..<layerCount)
        let rows = kvHeadCount * capacity
        let codeBytes = rows * headDim * (precision == .f32 ? 4 : 1)
        let scaleCount = precision == .int8 ? rows * headDim / Int(CK_KV_GROUP) : 0
        // All layers' keys and values in one buffer on huge pages: decoding with a full window
        // reads all of it every token (47 MB with the default window), as it reads the weights.
        let stride = (codeBytes + 63) / 64 * 64
        guard let rowsBuffer = ck_alloc_huge(2 * layerCount * stride) else { fatalError("out of memory for the KV cache") }
        storage = rowsBuffer
        keys = (0..<layerCount).map { rowsBuffer + 2 * $0 * stride }
        values = (0..<layerCount).map { rowsBuffer + (2 * $0 + 1) * stride }
        keyScales = (0..<layerCount).map { _ in .allocate(capacity: scaleCount) }
        valueScales = (0..<layerCount).map { _ in .allocate(capacity: scaleCount) }
        evicted = .allocate(capacity: 2 * kvHeadCount * headDim)
        positions = .allocate(capacity: capacity)
    }

    deinit {
        ck_free_huge(storage)
        (keyScales + valueScales).forEach { $0.deallocate() }
        evicted.deallocate()
        positions.deallocate()
    }

    /// Tokens currently held.
    public var count: Int { min(tokensSeen, capacity) }
    /// Whether one more token fits (always, with a window).
    public var canAppend: Bool { policy.window != nil || tokensSeen < capacity }
    /// How many more tokens fit; Int.max with a window.
    public var remaining: Int { policy.window != nil ? Int.max : capacity - tokensSeen }
    /// Memory one cached token takes (keys and values of every layer), in bytes.
    public var bytesPerToken: Int { 2 * layerCount * kvHeadCount * precision.rowBytes(headDim: headDim) }
    /// Memory the keys and values take, in bytes.
    public var bytes: Int { capacity * bytesPerToken }

    /// The slot of absolute position p: sinks keep theirs, window tokens cycle through the ring.
    public func slot(ofPosition p: Int) -> Int {
        let s = policy.sinks
        guard p >= s, let w = policy.window else { return p }
        return s + (p - s) % w
    }

    /// The absolute position whose rotation the query uses for sink keys: its position inside
    /// the cache, which stops growing once the cache is full.
    public func sinkQueryPosition(_ p: Int) -> Int { min(p, capacity - 1) }

    /// The oldest window position still held once position p is stored.
    public func oldestWindowPosition(after p: Int) -> Int {
        guard let w = policy.window else { return policy.sinks }
        return max(policy.sinks, p - w + 1)
    }

    /// Stores position `p`'s keys and values ([kv_head][head_dim] each) in one layer, handing
    /// the token it replaces to `onEvict` first.
    func store(layer: Int, position p: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(policy.window != nil || p < capacity, "KV cache full")
        let slot = self.slot(ofPosition: p)
        if let w = policy.window, p >= policy.sinks + w {
            if let journal = journals.last, p - w < journal.since { journal.keep(layer: layer, slot: slot, of: self) }
            if (memory != nil && memoryLayers[layer] != nil) || onEvict != nil {
                let token = leaving(layer: layer, slot: slot, position: p - w)
                if let m = memoryLayers[layer] { memory?.absorb(token, as: m) }
                onEvict?(token)
            }
        }
        let groups = headDim / Int(CK_KV_GROUP)
        for h in 0..<kvHeadCount {
            let row = h * capacity + slot
            switch precision {
            case .f32:
                (keys[layer].assumingMemoryBound(to: Float.self) + row * headDim).update(from: key + h * headDim, count: headDim)
                (values[layer].assumingMemoryBound(to: Float.self) + row * headDim).update(from: value + h * headDim, count: headDim)
            case .int8:
                ck_quantize_kv_row(key + h * headDim, keys[layer].assumingMemoryBound(to: Int8.self) + row * headDim,
                                   keyScales[layer] + row * groups, Int32(headDim))
                ck_quantize_kv_row(value + h * headDim, values[layer].assumingMemoryBound(to: Int8.self) + row * headDim,
                                   valueScales[layer] + row * groups, Int32(headDim))
            }
        }
    }

    /// The token in `slot` of one layer, as f32 rows (int8 rows are dequantized first).
    private func leaving(layer: Int, slot: Int, position: Int) -> EvictedToken {
        switch precision {
        case .f32:
            let k = keys[layer].assumingMemoryBound(to: Float.self), v = values[layer].assumingMemoryBound(to: Float.self)
            return EvictedToken(layer: layer, position: position, keys: k + slot * headDim, values: v + slot * headDim,
                                stride: capacity * headDim)
        case .int8:
            let groups = headDim / Int(CK_KV_GROUP)
            let k = keys[layer].assumingMemoryBound(to: Int8.self), v = values[layer].assumingMemoryBound(to: Int8.self)
            let outK = evicted, outV = evicted + kvHeadCount * headDim
            for h in 0..<kvHeadCount {
                let row = h * capacity + slot
                ck_dequantize_kv_row(k + row * headDim, keyScales[layer] + row * groups, outK + h * headDim, Int32(headDim))
                ck_dequantize_kv_row(v + row * headDim, valueScales[layer] + row * groups, outV + h * headDim, Int32(headDim))
            }
            return EvictedToken(layer: layer, position: position, keys: outK, values: outV, stride: headDim)
        }
    }

    /// Marks the next `n` positions as stored in every layer.
    /// Updated at commit, once every layer has stored the tokens: a chunk's later layers
    /// still see the positions of the cache as it was before the chunk.
    func commit(_ n: Int = 1) {
        for p in tokensSeen..<tokensSeen + n { positions[slot(ofPosition: p)] = Int64(p) }
        tokensSeen += n
    }

    /// The stream position each slot holds ([capacity]; slots below `count` are valid): what
    /// block attention (ck_attend_block) applies the window rule to.
    var slotPositions: UnsafePointer<Int64> { UnsafePointer(positions) }

    /// Marks the cache as holding a stream of `n` tokens, each slot the position the policy
    /// gives it (a session being loaded then fills the rows).
    func restore(tokensSeen n: Int) {
        tokensSeen = n
        for p in 0..<min(n, policy.sinks) { positions[p] = Int64(p) }
        // A stream shorter than the sinks has no window part (a one-question session with
        // `--sinks 64`: the range here once ran backwards and crashed the resume).
        for p in stride(from: max(policy.sinks, n - (policy.window ?? n)), to: n, by: 1) { positions[slot(ofPosition: p)] = Int64(p) }
    }

    public func reset() {
        tokensSeen = 0
        journals.removeAll()
        memory?.reset()
    }

    /// A layer's whole storage as the attention kernel reads it.
    func view(layer l: Int) -> ck_kv_view {
        ck_kv_view(type: Int32(precision == .f32 ? CK_KV_F32.rawValue : CK_KV_Q8.rawValue),
                   keys: UnsafeRawPointer(keys[l]), values: UnsafeRawPointer(values[l]),
                   key_scales: keyScales[l], value_scales: valueScales[l], capacity: Int64(capacity))
    }
}

extension ck_kv_view {
    /// Slots first ..< first + count of KV head h, as a run of keys for ck_attend_block or
    /// ck_pool_attend_segments (`positions`: the stream position of each slot, or nil).
    func segment(head h: Int, first: Int, count: Int, headDim hd: Int, sinkQuery: Bool, windowed: Bool,
                 positions: UnsafePointer<Int64>?) -> ck_kv_segment {
        let isF32 = type == Int32(CK_KV_F32.rawValue), row = h * Int(capacity) + first
        let rowBytes = isF32 ? hd * 4 : hd, groups = hd / Int(CK_KV_GROUP)
        return ck_kv_segment(type: type, sink_query: sinkQuery ? 1 : 0, windowed: windowed ? 1 : 0,
                             keys: keys + row * rowBytes, values: values + row * rowBytes,
                             key_scales: isF32 ? nil : key_scales + row * groups,
                             value_scales: isF32 ? nil : value_scales + row * groups,
                             row_stride: Int64(hd), count: Int64(count), positions: positions)
    }
}
