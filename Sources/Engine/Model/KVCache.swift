/// The keys and values of every token seen so far, per layer, laid out for the attention
/// kernel: [layer][kv_head][slot][head_dim], so one head's keys are contiguous.
///
/// This is the plain dense cache: slots fill up to `capacity` and then the caller must stop.
/// The attention-sink + sliding-window policy (#4) replaces it.
public final class KVCache {
    public let layerCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let capacity: Int
    public private(set) var count = 0
    private var keys: [UnsafeMutablePointer<Float>]    // per layer: [kv_head][capacity][head_dim]
    private var values: [UnsafeMutablePointer<Float>]  // per layer: [kv_head][capacity][head_dim]

    public init(layerCount: Int, kvHeadCount: Int, headDim: Int, capacity: Int) {
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.capacity = capacity
        let size = kvHeadCount * capacity * headDim
        keys = (0..<layerCount).map { _ in .allocate(capacity: size) }
        values = (0..<layerCount).map { _ in .allocate(capacity: size) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    public var isFull: Bool { count >= capacity }

    /// Stores one token's keys and values ([kv_head][head_dim] each) at `slot` of a layer
    /// (`count` for the next token; `count + i` for the i-th token of a batch).
    func store(layer: Int, slot: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        precondition(slot < capacity, "KV cache full")
        for h in 0..<kvHeadCount {
            let dst = (h * capacity + slot) * headDim
            (keys[layer] + dst).update(from: key + h * headDim, count: headDim)
            (values[layer] + dst).update(from: value + h * headDim, count: headDim)
        }
    }

    /// Marks the next `n` tokens stored in every layer as part of the cache.
    func commit(_ n: Int = 1) { count += n }

    public func reset() { count = 0 }

    /// A layer's whole storage, [kv_head][capacity][head_dim] each.
    func layer(_ l: Int) -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>) {
        (UnsafePointer(keys[l]), UnsafePointer(values[l]))
    }

    /// Keys and values of one KV head of a layer: rows of head_dim, one per slot.
    func head(layer: Int, kvHead: Int) -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>) {
        let off = kvHead * capacity * headDim
        return (UnsafePointer(keys[layer] + off), UnsafePointer(values[layer] + off))
    }
}
