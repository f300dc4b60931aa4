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

    public init(sinks: Int = 4, window: Int?) {
        self.sinks = sinks
        self.window = window
    }

    public static func dense(_ capacity: Int) -> CachePolicy { CachePolicy(sinks: capacity, window: nil) }

    /// Slots the cache holds: sinks + window (or the dense capacity).
    public var capacity: Int { sinks + (window ?? 0) }
}

/// One token's keys and values leaving the window, handed to the eviction hook (the block
/// memory of #6) before its slot is reused. Keys are as stored: rotated by `position`.
public struct EvictedToken {
    public let layer: Int
    public let position: Int                 // absolute position in the stream
    public let keys: UnsafePointer<Float>    // [kv_head] rows of head_dim, stride `stride`
    public let values: UnsafePointer<Float>
    public let stride: Int                   // floats between one KV head's row and the next
}

/// Keys and values per layer, laid out for the attention kernel: [layer][kv_head][slot]
/// [head_dim], one head's slots contiguous. Slots 0 ..< sinks hold the sink tokens; the
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
    public let capacity: Int
    /// Tokens seen since the start (or the last reset); the next token's absolute position.
    public private(set) var tokensSeen = 0
    /// Called for each layer of a token about to be overwritten.
    public var onEvict: ((EvictedToken) -> Void)?
    private var keys: [UnsafeMutablePointer<Float>]    // per layer: [kv_head][capacity][head_dim]
    private var values: [UnsafeMutablePointer<Float>]  // per layer: [kv_head][capacity][head_dim]

    public init(layerCount: Int, kvHeadCount: Int, headDim: Int, policy: CachePolicy) {
        precondition(policy.sinks >= 0 && (policy.window ?? 1) >= 1 && policy.capacity >= 1)
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.policy = policy
        self.capacity = policy.capacity
        let size = kvHeadCount * capacity * headDim
        keys = (0..<layerCount).map { _ in .allocate(capacity: size) }
        values = (0..<layerCount).map { _ in .allocate(capacity: size) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Tokens currently held.
    public var count: Int { min(tokensSeen, capacity) }
    /// Whether one more token fits (always, with a window).
    public var canAppend: Bool { policy.window != nil || tokensSeen < capacity }
    /// How many more tokens fit; Int.max with a window.
    public var remaining: Int { policy.window != nil ? Int.max : capacity - tokensSeen }
    /// Memory the keys and values take, in bytes (f32).
    public var bytes: Int { 2 * layerCount * kvHeadCount * capacity * headDim * MemoryLayout<Float>.size }

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
            let old = slot * headDim
            onEvict?(EvictedToken(layer: layer, position: p - w, keys: keys[layer] + old, values: values[layer] + old,
                                  stride: capacity * headDim))
        }
        for h in 0..<kvHeadCount {
            let dst = (h * capacity + slot) * headDim
            (keys[layer] + dst).update(from: key + h * headDim, count: headDim)
            (values[layer] + dst).update(from: value + h * headDim, count: headDim)
        }
    }

    /// Marks the next `n` positions as stored in every layer.
    func commit(_ n: Int = 1) { tokensSeen += n }

    public func reset() { tokensSeen = 0 }

    /// A layer's whole storage, [kv_head][capacity][head_dim] each.
    func layer(_ l: Int) -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>) {
        (UnsafePointer(keys[l]), UnsafePointer(values[l]))
    }
}
